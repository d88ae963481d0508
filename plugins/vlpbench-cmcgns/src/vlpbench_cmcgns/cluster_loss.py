"""Cluster-guided negatives on a cosine matrix (shared by the sentence loss and the global weighting).

[code: cgns/models/cgns/cgns_module.py:235-282, text_local_loss_fn] For anchors z1 and candidates z2 with
``C_ij = cos(z1_i, z2_j)``: the k-means over the candidates is fed and (once initialised) updated;
the hard negative of anchor i is the centroid with the 2nd-highest cosine to z1_i, appended as one
extra logit ``scale · cos(z1_i, h_i)`` (scale 3, a scaled logit, not a weight on exp); and the
margin term L_FN acts on pairs whose anchors share a cluster.

``hard_negative_logits``: the official code (``cgns_module.py:263-275``) appends a whole N×N block
of centroid logits and multiplies it by a 0/3 mask, so row i gets ``3·cos(z1_i, h_i)`` in column
N+i and a logit 0 (not −∞) in the other N−1 columns: every denominator gains N−1 terms e^0.
``official_block`` (default) reproduces that block; ``single_column`` appends only the centroid
column (the cleaner variant; METHODS.md's first reading).

``skip_initialising_step``: as in the official code (``cgns_module.py:250-257``, an ``if``/``elif``),
the step that initialises the centroids uses no hard negatives and no margin term and does not
update them; from the next step on each step first updates the centroids, then uses them.
"""

from __future__ import annotations

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
                      margin_reduction: str = "all", hard_negative_logits: str = "single_column",
                      skip_initialising_step: bool = True) -> ClusterNegatives:
    if training:
        kmeans.enqueue(candidates)
        initialised_now = kmeans.maybe_initialise(similarity.detach().mean(), candidates)
        if initialised_now and skip_initialising_step:
            return ClusterNegatives(None, None)
    if not kmeans.ready:
        return ClusterNegatives(None, None)
    if training:
        kmeans.update(candidates)
    hard = kmeans.hard_negatives(anchors)
    column = scale * F.cosine_similarity(anchors, hard.to(anchors.dtype), dim=-1)  # [N]
    extra = torch.diag(column) if hard_negative_logits == "official_block" else column.unsqueeze(1)
    margin = same_cluster_margin(similarity, kmeans.assign(anchors.detach()), margin_low, margin_high, margin_reduction)
    return ClusterNegatives(extra, margin)
