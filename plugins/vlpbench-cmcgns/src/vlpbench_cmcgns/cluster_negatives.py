"""Cluster-guided negatives at the *global* level, as a negative weighting.

[interpretation] CM-CGNS uses its cluster-guided negatives inside the sentence-level loss; this
component carries the same mechanism to the global image–report loss so that it combines with any
miner and global loss. Per direction, the candidates of the other modality are clustered by their
own streaming k-means (image→text: the reports' embeddings t; text→image: the images' v), each
anchor's hard negative is the centroid with the 2nd-highest cosine to it, appended as one extra
column with the logit ``scale · cos(anchor, centroid)`` (scale 3, not multiplied by the global
loss's logit scale), and the same-cluster margin term L_FN (weight 1e-4) is added, averaged over
the two directions. Ω = 1 (no weight on the existing negatives). The k-means and the margin
follow the sentence loss's official defaults (greedy chain initialisation, L_FN averaged over every
entry, no hard negatives on the initialising step); the single centroid column is used here (the
official N−1 zero logits belong to the sentence loss). The term ``fn`` appears once the
centroids exist, so the run's provenance shows when the mechanism was active.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from vlpbench.plugin_api import (AlignmentInputs, BuildContext, DirectionAdjustment, ModuleComponent,
                                 NegativeAdjustment, Positives)
from vlpbench_cmcgns.cluster_loss import cluster_negatives
from vlpbench_cmcgns.kmeans import StreamingKMeans


class ClusterGuidedNegatives(ModuleComponent["ClusterGuidedNegatives.Params"]):
    reference = "arXiv:2506.11674 (CM-CGNS)"
    official_code = "https://github.com/violet-42/CM-CGNS"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        clusters: int = Field(128, ge=2)
        momentum: float = Field(0.999, ge=0, lt=1)
        init_threshold: float = 0.4
        init: Literal["chain", "farthest_point"] = "chain"
        init_pool: Literal["batch", "queue"] = "batch"
        queue_size: int = Field(1024, ge=2)
        scale: float = Field(3.0, gt=0, description="logit of the centroid column = scale · cosine")
        margin_low: float = 0.2
        margin_high: float = 0.5
        fn_weight: float = Field(1e-4, ge=0)
        margin_reduction: Literal["all", "pairs"] = "all"
        skip_initialising_step: bool = True

    def __init__(self, params: "ClusterGuidedNegatives.Params", context: BuildContext) -> None:
        super().__init__(params, context)
        size = max(params.queue_size, params.clusters)
        make = lambda: StreamingKMeans(params.clusters, context.embed_dim, params.momentum,  # noqa: E731
                                       params.init_threshold, size, params.init, params.init_pool)
        self.text_clusters, self.image_clusters = make(), make()

    def forward(self, inputs: AlignmentInputs, positives: Positives) -> NegativeAdjustment:
        p = self.params
        v = F.normalize(inputs.image.global_emb, dim=-1)
        t = F.normalize(inputs.text.global_emb, dim=-1)
        similarity = v @ t.t()
        options = dict(training=self.training, scale=p.scale, margin_low=p.margin_low,
                       margin_high=p.margin_high, margin_reduction=p.margin_reduction,
                       skip_initialising_step=p.skip_initialising_step)
        i2t = cluster_negatives(v, t, similarity, self.text_clusters, **options)
        t2i = cluster_negatives(t, v, similarity.t(), self.image_clusters, **options)
        margins = [m for m in (i2t.margin, t2i.margin) if m is not None]
        losses = {"fn": p.fn_weight * sum(margins) / len(margins)} if margins else {}
        return NegativeAdjustment(DirectionAdjustment(extra_logits=i2t.extra_logits),
                                  DirectionAdjustment(extra_logits=t2i.extra_logits), losses)
