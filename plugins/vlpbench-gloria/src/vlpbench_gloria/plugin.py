"""Registers GLoRIA's components and preset with vlpbench (entry point ``gloria``)."""

from __future__ import annotations

from vlpbench.plugin_api import Registrar, hookimpl

COMPONENTS = [
    ("global_loss", "gloria.global", "vlpbench_gloria.losses:GloriaGlobalLoss",
     "10·cosine logits, image→text and text→image cross-entropies SUMMED"),
    ("local_head", "gloria.local", "vlpbench_gloria.local:GloriaLocal",
     "word-region attention (softmax over words, then over regions of 4×probability), log-sum-exp of 5·cosine, ×10, both directions summed"),
    ("preset", "gloria", "vlpbench_gloria.presets:GLORIA", "GLoRIA's objective: global + local, weights 1 and 1"),
]


@hookimpl
def vlpbench_register(registrar: Registrar) -> None:
    registrar.add_all(COMPONENTS)
