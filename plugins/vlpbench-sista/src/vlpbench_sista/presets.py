"""``preset: sista``: InfoNCE with false-negative elimination (mask mode) and sparse token alignment."""

SISTA = {
    "objective.global": {"name": "infonce", "temperature": 0.07},
    "objective.positive_miner": {"name": "sista.fn_elimination", "mode": "mask"},
    "objective.local_heads": [{"name": "sista.sparse_token"}],
}
