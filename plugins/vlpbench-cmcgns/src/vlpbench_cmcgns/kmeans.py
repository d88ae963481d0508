"""Streaming k-means over a feature stream, and the cluster-guided hard negatives built on it.

[code: utils/Kmeans_Cluster.py] K centroids (128) are initialised once the mean cross-modal cosine
of a batch is at most 0.4, by farthest-point selection starting from a random feature; from then
on every training step assigns the (detached) features to their most similar centroid and updates
``c_k ← 0.001·Σ_{x∈k} x + 0.999·c_k`` (a sum, not a mean; empty clusters keep their value).

Deviations, configurable: the official code initialises from the current batch and asserts that it
holds at least K features; here a FIFO queue of recent features makes initialisation possible
with small batches (``queue_size``). The official selection is a greedy chain (each centroid the
feature least similar to the previous one: ``init: chain``); METHODS.md's farthest-point selection
(least similar to all chosen so far) is the default. Everything is a buffer, so checkpoints
resume it exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class StreamingKMeans(nn.Module):
    def __init__(self, clusters: int, dim: int, momentum: float = 0.999, init_threshold: float = 0.4,
                 queue_size: int = 1024, init: str = "farthest_point") -> None:
        super().__init__()
        if queue_size < clusters:
            raise ValueError(f"queue_size ({queue_size}) must be at least the number of clusters ({clusters})")
        self.clusters, self.momentum, self.init_threshold, self.init = clusters, momentum, init_threshold, init
        self.register_buffer("centroids", torch.zeros(clusters, dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.register_buffer("queue", torch.zeros(queue_size, dim))
        self.register_buffer("queue_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    @property
    def ready(self) -> bool:
        return bool(self.initialised)

    @torch.no_grad()
    def enqueue(self, features: Tensor) -> None:
        size = self.queue.shape[0]
        features = features.detach()[-size:].to(self.queue.dtype)
        slots = (self.queue_pointer + torch.arange(len(features), device=features.device)) % size
        self.queue[slots] = features
        self.queue_pointer.copy_((self.queue_pointer + len(features)) % size)
        self.queue_count.copy_(torch.clamp(self.queue_count + len(features), max=size))

    @torch.no_grad()
    def maybe_initialise(self, mean_similarity: Tensor) -> None:
        if self.ready or float(mean_similarity) > self.init_threshold or int(self.queue_count) < self.clusters:
            return
        pool = F.normalize(self.queue[: int(self.queue_count)], dim=-1)
        chosen = [int(torch.randint(len(pool), (1,)))]
        closest = pool @ pool[chosen[0]]  # similarity to the nearest chosen centroid (farthest-point)
        for _ in range(self.clusters - 1):
            if self.init == "chain":
                scores = (pool @ pool[chosen[-1]]).index_fill(0, torch.tensor(chosen, device=pool.device), float("inf"))
            else:
                scores = closest.index_fill(0, torch.tensor(chosen, device=pool.device), float("inf"))
            chosen.append(int(scores.argmin()))
            closest = torch.maximum(closest, pool @ pool[chosen[-1]])
        self.centroids.copy_(self.queue[torch.tensor(chosen, device=pool.device)])
        self.initialised.fill_(True)

    def assign(self, features: Tensor) -> Tensor:
        """Index of the most similar centroid of each feature [N]."""
        return (F.normalize(features, dim=-1) @ F.normalize(self.centroids, dim=-1).t()).argmax(1)

    @torch.no_grad()
    def update(self, features: Tensor) -> None:
        """c_k ← (1 − m)·Σ_{x∈k} x + m·c_k for every non-empty cluster."""
        features = features.detach().to(self.centroids.dtype)
        onehot = F.one_hot(self.assign(features), self.clusters).to(features.dtype)  # [N,K]
        sums, counts = onehot.t() @ features, onehot.sum(0)
        updated = (1 - self.momentum) * sums + self.momentum * self.centroids
        self.centroids.copy_(torch.where(counts.unsqueeze(1) > 0, updated, self.centroids))

    def hard_negatives(self, anchors: Tensor) -> Tensor:
        """The centroid with the 2nd-highest cosine to each anchor [N,D] (detached)."""
        similarity = F.normalize(anchors, dim=-1) @ F.normalize(self.centroids, dim=-1).t()
        second = similarity.topk(2, dim=1).indices[:, 1]
        return self.centroids[second].detach()


def same_cluster_margin(similarity: Tensor, clusters: Tensor, low: float, high: float, reduction: str = "pairs") -> Tensor:
    """L_FN = mean over same-cluster pairs i≠j of ReLU(Δ+low) + ReLU(−Δ−high), Δ_ij = C_ij − C_ii.

    ``reduction: all`` averages over every entry of the matrix as the official code does (other
    entries then contribute the constant ReLU(low)).
    """
    n = similarity.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=similarity.device)
    same = (clusters.unsqueeze(0) == clusters.unsqueeze(1)) & ~eye
    delta = (similarity - similarity.diagonal().unsqueeze(1)) * same
    margins = F.relu(delta + low) + F.relu(-delta - high)
    if reduction == "all":
        return margins.mean()
    if not same.any():
        return similarity.sum() * 0.0
    return margins[same].mean()
