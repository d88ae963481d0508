"""``preset: cmcgns``: CLIP InfoNCE (τ 0.1) + local cross-attention head; CM-MIR from a third of the
run on (the official schedule is 10 stage-1 epochs then 20 with reconstruction).

Negative scope (METHODS.md): the official global InfoNCE gathers across GPUs, so the preset's is
``gathered``; the local head's sentence loss and its k-means stay per process (``local``)."""

CMCGNS = {
    "objective.global": {"name": "infonce", "temperature": 0.1},
    "objective.negative_scope": "gathered",
    "objective.positive_miner": {"name": "identity"},
    "objective.local_heads": [{"name": "cmcgns.cross_attention", "scope": "local"}],
    "objective.auxiliaries": [{"name": "cmcgns.mir", "start": 0.3333}],
}
