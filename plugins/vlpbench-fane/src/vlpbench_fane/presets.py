"""``preset: fane``: the objective of the official code (all four terms with weight 1).

Negative scope (METHODS.md): the official code mines and computes its losses per GPU: ``local``."""

FANE = {
    "objective.negative_scope": "local",
    "objective.global": {"name": "fane.sigmoid_mp"},
    "objective.positive_miner": {"name": "fane.adaptive_miner"},
    "objective.negative_weighting": [{"name": "fane.hard_negative"}],
    "objective.local_heads": [{"name": "fane.tcsap"}],
}
