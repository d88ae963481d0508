"""Registers MGCA's components and preset with vlpbench (entry point ``mgca``)."""

from __future__ import annotations

from vlpbench.plugin_api import Registrar, hookimpl

COMPONENTS = [
    ("global_loss", "mgca.ita", "vlpbench_mgca.ita:InstanceAlignment",
     "ITA: cosine / 0.07, image→text and text→image cross-entropies SUMMED"),
    ("local_head", "mgca.cta", "vlpbench_mgca.cta:TokenAlignment",
     "CTA: token-wise cross-modal alignment, word and patch sides, importance-weighted (quantile-clipped attention)"),
    ("auxiliary", "mgca.prototypes", "vlpbench_mgca.prototypes:PrototypeAlignment",
     "CPA: 500 prototypes, Sinkhorn-Knopp codes (ε 0.05, 3 iterations), swapped prediction τ 0.2"),
    ("preset", "mgca", "vlpbench_mgca.presets:MGCA", "MGCA's objective with the effective official weights (1, 1, 1)"),
]


@hookimpl
def vlpbench_register(registrar: Registrar) -> None:
    registrar.add_all(COMPONENTS)
