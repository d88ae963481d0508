"""Cluster-guided negatives on a cosine matrix (shared by the sentence loss and the global weighting).

[code: models/cgns/cgns_module.py, text_local_loss_fn] For anchors z1 and candidates z2 with
``C_ij = cos(z1_i, z2_j)``: the k-means over the candidates is fed and (once initialised) updated;
the hard negative of anchor i is the centroid with the 2nd-highest cosine to z1_i, appended as one
extra logit ``scale · cos(z1_i, h_i)`` (scale 3, a scaled logit, not a weight on exp); and the
margin term L_FN acts on pairs whose anchors share a cluster.

``official_zero_logits``: the official code appends a whole block whose off-diagonal logits are 0
(not −inf), which adds N−1 terms e^0 to every denominator; this option reproduces it as one extra
logit log(N−1). Off by default (METHODS.md: one extra logit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vlpbench_cmcgns.kmeans import StreamingKMeans, same_cluster_margin


@dataclass
class ClusterNegatives:
    extra_logits: Tensor | None  # [N, E] appended to the anchors' candidate logits
    margin: Tensor | None  # L_FN (None before the centroids exist)


def cluster_negatives(anchors: Tensor, candidates: Tensor, similarity: Tensor, kmeans: StreamingKMeans,
                      training: bool, scale: float = 3.0, margin_low: float = 0.2, margin_high: float = 0.5,
                      margin_reduction: str = "pairs", official_zero_logits: bool = False) -> ClusterNegatives:
    if training:
        kmeans.enqueue(candidates)
        kmeans.maybe_initialise(similarity.detach().mean())
    if not kmeans.ready:
        return ClusterNegatives(None, None)
    if training:
        kmeans.update(candidates)
    hard = kmeans.hard_negatives(anchors)
    extra = scale * F.cosine_similarity(anchors, hard.to(anchors.dtype), dim=-1).unsqueeze(1)
    if official_zero_logits and len(anchors) > 1:
        extra = torch.cat([extra, torch.full_like(extra, math.log(len(anchors) - 1))], dim=1)
    margin = same_cluster_margin(similarity, kmeans.assign(anchors.detach()), margin_low, margin_high, margin_reduction)
    return ClusterNegatives(extra, margin)
