"""Registers CM-CGNS's components and preset with vlpbench (entry point ``cmcgns``)."""

from __future__ import annotations

from vlpbench.plugin_api import Registrar, hookimpl

COMPONENTS = [
    ("local_head", "cmcgns.cross_attention", "vlpbench_cmcgns.cross_attention:BidirectionalCrossAttentionHead",
     "bidirectional sigmoid cross-attention; SimSiam patch loss; sentence loss with cluster-guided negatives"),
    ("negative_weighting", "cmcgns.cluster_negatives", "vlpbench_cmcgns.cluster_negatives:ClusterGuidedNegatives",
     "global-level cluster-guided hard negatives (centroid column × 3) and same-cluster margin term"),
    ("auxiliary", "cmcgns.mir", "vlpbench_cmcgns.reconstruction:CrossModalMaskedReconstruction",
     "CM-MIR: masked patch tokens attend to text-conditioned patches and reconstruct the image"),
    ("preset", "cmcgns", "vlpbench_cmcgns.presets:CMCGNS", "CM-CGNS's objective and two-stage schedule"),
]


@hookimpl
def vlpbench_register(registrar: Registrar) -> None:
    registrar.add_all(COMPONENTS)
