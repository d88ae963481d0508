"""``preset: gloria``: L = (l0 + l1)·1 + (g0 + g1)·1, both terms from step 0, directions summed
[code: gloria/models/gloria_model.py:77-80; configs/chexpert_pretrain_config.yaml:32-36].
Negative scope: one GPU, no gather (``gpus: '1'``, config lines 6-8): ``local``. The global text
vector is the mean over token positions (GLoRIA's sentence feature is a mean over the positions)."""

GLORIA = {
    "model.text_encoder.pooling": "mean",
    "objective.negative_scope": "local",
    "objective.global": {"name": "gloria.global"},
    "objective.positive_miner": {"name": "identity"},
    "objective.negative_weighting": [{"name": "uniform"}],
    "objective.local_heads": [{"name": "gloria.local", "weight": 1.0}],
}
