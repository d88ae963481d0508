"""Registers ConVIRT's global loss and preset with vlpbench (entry point ``convirt``)."""

from __future__ import annotations

from vlpbench.plugin_api import Registrar, hookimpl

COMPONENTS = [
    ("global_loss", "convirt.loss", "vlpbench_convirt.loss:ConVIRTLoss",
     "λ-weighted bidirectional InfoNCE (λ 0.75 on image→text, τ 0.1); style: mgca gives MGCA's summed τ 0.07 baseline"),
    ("preset", "convirt", "vlpbench_convirt.presets:CONVIRT", "ConVIRT as ViLMedic/BenchX train it"),
]


@hookimpl
def vlpbench_register(registrar: Registrar) -> None:
    registrar.add_all(COMPONENTS)
