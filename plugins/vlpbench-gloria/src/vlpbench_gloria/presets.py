"""``preset: gloria``: L = (l0 + l1)·1 + (g0 + g1)·1, both terms from step 0, directions summed
[code: gloria/models/gloria_model.py:77-80; configs/chexpert_pretrain_config.yaml:32-36].
Negative scope: one GPU, no gather (``gpus: '1'``, config lines 6-8): ``local``. The global text
vector is the mean over token positions (GLoRIA's sentence feature is a mean over the positions).
The word features are the word pieces summed into words (``agg_tokens: true``,
``gloria/models/text_model.py:32-90``) by the text encoder (``word_pieces: sum``). GLoRIA's sum of
the last 4 BERT layers is the encoder option ``hidden_layers: 4``, not set here because it needs a
text encoder of at least 4 layers (set it with Bio_ClinicalBERT)."""

GLORIA = {
    "model.text_encoder.pooling": "mean",
    "model.text_encoder.word_pieces": "sum",
    "objective.negative_scope": "local",
    "objective.global": {"name": "gloria.global"},
    "objective.positive_miner": {"name": "identity"},
    "objective.negative_weighting": [{"name": "uniform"}],
    "objective.local_heads": [{"name": "gloria.local", "weight": 1.0}],
}
