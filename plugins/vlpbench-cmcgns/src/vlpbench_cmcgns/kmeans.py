"""Streaming k-means over a feature stream, and the cluster-guided hard negatives built on it.

[code: cgns/models/cgns/utils/Kmeans_Cluster.py] K centroids (128) are initialised once the mean
cross-modal cosine of a batch is at most 0.4 (``cgns_module.py:248-254``), by the official greedy
chain (``Kmeans_Cluster.py:158-178``): a random feature first, then each next centroid is the
feature least similar to the *previous* centroid among those not chosen yet (``init: chain``,
default; ``farthest_point`` takes the feature least similar to *all* chosen so far). From then on
every training step assigns the (detached) features to their most similar centroid and updates
``c_k ← 0.001·Σ_{x∈k} x + 0.999·c_k`` (``Kmeans_Cluster.py:139-156,193-201``: a sum, not a mean;
empty clusters keep their value).

The official code initialises from the current batch and asserts that it holds at least K
features. ``init_pool: batch`` (default) does the same when the batch is large enough and
otherwise falls back to a FIFO queue of recent features (``queue_size``), where the official code
would stop with an assertion error; ``init_pool: queue`` always uses the queue. Everything is a
buffer, so checkpoints resume it exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class StreamingKMeans(nn.Module):
    def __init__(self, clusters: int, dim: int, momentum: float = 0.999, init_threshold: float = 0.4,
                 queue_size: int = 1024, init: str = "chain", init_pool: str = "batch") -> None:
        super().__init__()
        if queue_size < clusters:
            raise ValueError(f"queue_size ({queue_size}) must be at least the number of clusters ({clusters})")
        self.clusters, self.momentum, self.init_threshold, self.init = clusters, momentum, init_threshold, init
        self.init_pool = init_pool
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

    def random_start(self, count: int) -> int:
        """Index of the first centroid among ``count`` candidates (official: uniform at random)."""
        return int(torch.randint(count, (1,)))

    @torch.no_grad()
    def maybe_initialise(self, mean_similarity: Tensor, batch: Tensor | None = None) -> bool:
        """Initialise the centroids if not done yet and ``mean_similarity ≤ init_threshold``; True if
        this call initialised them. The pool is ``batch`` (``init_pool: batch``, when it holds at
        least K features) or the queue."""
        if self.ready or float(mean_similarity) > self.init_threshold:
            return False
        if self.init_pool == "batch" and batch is not None and len(batch) >= self.clusters:
            candidates = batch.detach().to(self.centroids.dtype)
        elif int(self.queue_count) >= self.clusters:
            candidates = self.queue[: int(self.queue_count)]
        else:
            return False
        pool = F.normalize(candidates, dim=-1)
        chosen = [self.random_start(len(pool))]
        closest = pool @ pool[chosen[0]]  # similarity to the nearest chosen centroid (farthest-point)
        for _ in range(self.clusters - 1):
            taken = torch.tensor(chosen, device=pool.device)
            if self.init == "chain":  # Kmeans_Cluster.py:170-175: least similar to the previous centroid
                scores = (pool @ pool[chosen[-1]]).index_fill(0, taken, float("inf"))
            else:
                scores = closest.index_fill(0, taken, float("inf"))
            chosen.append(int(scores.argmin()))
            closest = torch.maximum(closest, pool @ pool[chosen[-1]])
        self.centroids.copy_(candidates[torch.tensor(chosen, device=pool.device)])
        self.initialised.fill_(True)
        return True

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
