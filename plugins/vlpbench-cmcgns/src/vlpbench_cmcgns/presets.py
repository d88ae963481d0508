"""``preset: cmcgns``: CLIP InfoNCE (τ 0.1) + local cross-attention head; CM-MIR from a third of the
run on (the official schedule is 10 stage-1 epochs then 20 with reconstruction)."""

CMCGNS = {
    "objective.global": {"name": "infonce", "temperature": 0.1},
    "objective.positive_miner": {"name": "identity"},
    "objective.local_heads": [{"name": "cmcgns.cross_attention"}],
    "objective.auxiliaries": [{"name": "cmcgns.mir", "start": 0.3333}],
}
