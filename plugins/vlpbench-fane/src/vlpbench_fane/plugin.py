"""Registers FaNe's components and preset with vlpbench (entry point ``fane``)."""

from __future__ import annotations

from vlpbench.plugin_api import Registrar, hookimpl

COMPONENTS = [
    ("positive_miner", "fane.adaptive_miner", "vlpbench_fane.miner:AdaptiveSemanticMiner",
     "semantic positives from frozen report vectors with EMA-adaptive normalisation (κ threshold)"),
    ("global_loss", "fane.sigmoid_mp", "vlpbench_fane.losses:SigmoidMultiPositiveLoss",
     "sigmoid multi-positive image-report loss (every mined positive pulled together)"),
    ("negative_weighting", "fane.hard_negative", "vlpbench_fane.losses:HardNegativeIntraModal",
     "hard-negative-aware intra-modal term L_hn on the miner's negatives"),
    ("local_head", "fane.tcsap", "vlpbench_fane.tcsap:TCSAP",
     "text-conditioned sparse attention pooling: sentences query patches, sigmoid attention, L1 mask sparsity"),
    ("preset", "fane", "vlpbench_fane.presets:FANE", "FaNe's full objective with the official defaults"),
]


@hookimpl
def vlpbench_register(registrar: Registrar) -> None:
    registrar.add_all(COMPONENTS)


@hookimpl
def vlpbench_reported_results() -> list[dict]:
    """FaNe's published numbers and the baselines its paper reports (see :mod:`vlpbench_fane.reported`)."""
    from vlpbench_fane.reported import REPORTED

    return REPORTED
