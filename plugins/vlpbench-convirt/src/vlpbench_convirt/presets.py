"""``preset: convirt``: ConVIRT's loss as ViLMedic/BenchX implement it (λ 0.75 on image→text, τ 0.1),
with the identity miner and no weighting, local negative scope (the whole per-process batch,
``vilmedic/models/selfsup/conVIRT.py:83-100``). The encoders stay the experiment's (ViLMedic: a
ResNet-50 and biomed_roberta_base's pooler output, each with a 2-layer projection head)."""

CONVIRT = {
    "objective.negative_scope": "local",
    "objective.global": {"name": "convirt.loss"},
    "objective.positive_miner": {"name": "identity"},
    "objective.negative_weighting": [{"name": "uniform"}],
}
