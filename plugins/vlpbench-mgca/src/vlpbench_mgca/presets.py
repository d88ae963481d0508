"""``preset: mgca``: L = λ1·L_ita + λ2·L_local + λ3·L_proto with the EFFECTIVE official weights
(1, 1, 1): the argparse defaults (``mgca_module.py:428-430``) reach ``__init__`` through
``MGCA(**args.__dict__)`` (line 487) and override its (1, 0.7, 0.5) (lines 51-53). All terms from
step 0; the prototypes are frozen during the first of 50 epochs (lines 54, 340-343), i.e. the first
2 % of the steps. Negative scope: every term uses the per-GPU batch (``concat_all_gather`` is never
called, lines 456-465): ``local``. The word tokens are word pieces summed into words
(``aggregate_tokens``, ``backbones/encoder.py:307-376``: ``word_pieces: sum``); ``mgca.cta`` requests
the encoders' last-layer [CLS] attention for its importance weights (a CNN gives none: uniform patch
weights, as the official code)."""

MGCA = {
    "model.text_encoder.word_pieces": "sum",
    "objective.negative_scope": "local",
    "objective.global": {"name": "mgca.ita"},
    "objective.positive_miner": {"name": "identity"},
    "objective.negative_weighting": [{"name": "uniform"}],
    "objective.local_heads": [{"name": "mgca.cta", "weight": 1.0}],
    "objective.auxiliaries": [{"name": "mgca.prototypes", "weight": 1.0}],
}
