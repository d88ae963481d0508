"""``preset: sista``: InfoNCE with false-negative elimination (mask mode) and sparse token alignment.

Negative scope: SISTA has no public code; ``local`` (METHODS.md's default for unknown scopes)."""

SISTA = {
    "objective.negative_scope": "local",
    "objective.global": {"name": "infonce", "temperature": 0.07},
    "objective.positive_miner": {"name": "sista.fn_elimination", "mode": "mask"},
    "objective.local_heads": [{"name": "sista.sparse_token"}],
}
