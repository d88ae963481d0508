"""``preset: fane``: the objective of the official code (all four terms with weight 1)."""

FANE = {
    "objective.global": {"name": "fane.sigmoid_mp"},
    "objective.positive_miner": {"name": "fane.adaptive_miner"},
    "objective.negative_weighting": [{"name": "fane.hard_negative"}],
    "objective.local_heads": [{"name": "fane.tcsap"}],
}
