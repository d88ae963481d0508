"""Registers SISTA's components and preset with vlpbench (entry point ``sista``)."""

from __future__ import annotations

from vlpbench.plugin_api import Registrar, hookimpl

COMPONENTS = [
    ("positive_miner", "sista.fn_elimination", "vlpbench_sista.miner:FalseNegativeElimination",
     "semantic-aware instance alignment: similar reports ignored (mask), positives, or soft targets"),
    ("local_head", "sista.sparse_token", "vlpbench_sista.sta:SparseTokenAlignment",
     "sparse token alignment (SPARC-style word-grouped patch vectors, within-report word InfoNCE)"),
    ("preset", "sista", "vlpbench_sista.presets:SISTA", "SISTA's objective (interpreted; no public code)"),
]


@hookimpl
def vlpbench_register(registrar: Registrar) -> None:
    registrar.add_all(COMPONENTS)
