"""``preset: medclip``: MedCLIP's loss with labels [code: medclip/losses.py:34-84].

Soft targets from the official label similarity (integer dot products, softmax temperature 1) under
vlpbench's InfoNCE with a learnable logit scale initialised to 1/0.07 and capped at 100
(``modeling_medclip.py:134,144,229``: log scale in [0, 4.6052]); the two directions averaged
(``losses.py:76``). Text vector: the mean token (MedCLIP averages all token positions of hidden
states 1, 2 and last, ``modeling_medclip.py:28-43``). Negative scope: one GPU, whole batch: ``local``."""

MEDCLIP = {
    "model.text_encoder.pooling": "mean",
    "objective.negative_scope": "local",
    "objective.global": {"name": "infonce", "temperature": 0.07, "learnable": True, "max_logit_scale": 100.0},
    "objective.positive_miner": {"name": "medclip.label_similarity"},
    "objective.negative_weighting": [{"name": "uniform"}],
}
