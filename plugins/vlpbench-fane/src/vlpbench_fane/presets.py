"""``preset: fane``: the objective of the official code (all four terms with weight 1) and its global
report vector, the attention pool over the sentence vectors (``models/fane.py:64,325-329``).

Negative scope (METHODS.md): the official code mines and computes its losses per GPU: ``local``.
The per-load sentence shuffle of the official data path (``data/pretrain/mimiccxr.py:80``,
``transoforms/language.py:7-12``) is on (``pretrain.sentence_shuffle``): each report's sentences in a
new order every epoch, for the text encoder and for the frozen report encoder of the miner."""

FANE = {
    "model.text_encoder.pooling": "sentence_attention",
    "objective.negative_scope": "local",
    "objective.global": {"name": "fane.sigmoid_mp"},
    "objective.positive_miner": {"name": "fane.adaptive_miner"},
    "objective.negative_weighting": [{"name": "fane.hard_negative"}],
    "objective.local_heads": [{"name": "fane.tcsap"}],
    "pretrain.sentence_shuffle": True,
}
