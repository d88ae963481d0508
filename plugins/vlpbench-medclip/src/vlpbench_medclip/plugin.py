"""Registers MedCLIP's label-similarity targets and preset with vlpbench (entry point ``medclip``)."""

from __future__ import annotations

from vlpbench.plugin_api import Registrar, hookimpl

COMPONENTS = [
    ("positive_miner", "medclip.label_similarity", "vlpbench_medclip.miner:LabelSimilarityMiner",
     "soft targets softmax(label similarity / T): official integer dot products, T 1; cosine option"),
    ("preset", "medclip", "vlpbench_medclip.presets:MEDCLIP",
     "MedCLIP's semantic matching loss: label-similarity soft targets under a learnable-temperature InfoNCE"),
]


@hookimpl
def vlpbench_register(registrar: Registrar) -> None:
    registrar.add_all(COMPONENTS)
