"""Image↔report retrieval on held-out pairs: Recall@K, strict and semantic.

Embeddings of the held-out split's images and reports give a cosine matrix. *Strict* recall counts
a hit only when the paired report (image) is among the top K; *semantic* recall counts any report
(image) whose set of positive findings equals the query's. The gap between the two is how much
false negatives distort a retrieval score. Vectorised: one top-K per direction.
"""

from __future__ import annotations

from math import lgamma
from typing import Any

import numpy as np
import torch
from pydantic import Field

from vlpbench.core.component import Component
from vlpbench.tasks.base import (Column, Encoders, Samples, TaskParams, TaskResult, scored_cases, test_cases_field,
                                 text_embeddings, with_hash)


def hits_at_k(similarity: torch.Tensor, relevant: torch.Tensor, ks: list[int]) -> dict[int, torch.Tensor]:
    """Per query (row): whether a relevant candidate is among its top K columns, [n] bool per K."""
    top = similarity.topk(min(max(ks), similarity.shape[1]), dim=1).indices  # [n, K]
    hits = relevant.gather(1, top)  # [n, K] bool
    return {k: hits[:, :k].any(1) for k in ks}


def recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, ks: list[int]) -> dict[int, float]:
    """Share of queries (rows) with a relevant candidate among their top K columns."""
    return {k: float(hit.float().mean()) for k, hit in hits_at_k(similarity, relevant, ks).items()}


def same_finding_set(labels: np.ndarray) -> torch.Tensor:
    """bool [n, n]: whether items i and j have the same set of positive findings (equal label rows).
    Each distinct row gets one integer id first, so no [n, n, L] comparison is built (128 MB at
    4,000 items and 8 findings)."""
    if len(labels) == 0:
        return torch.zeros(0, 0, dtype=torch.bool)
    if labels.dtype.kind == "f" and np.isnan(labels).any():  # NaN equals nothing, itself included: compare rows
        rows = torch.from_numpy(labels)
        return (rows.unsqueeze(1) == rows.unsqueeze(0)).all(-1)
    _, ids = np.unique(labels.reshape(len(labels), -1), axis=0, return_inverse=True)
    ids_t = torch.from_numpy(ids.reshape(-1))
    return ids_t.unsqueeze(1) == ids_t.unsqueeze(0)


def chance_recall(relevant: torch.Tensor, k: int) -> float:
    """Expected Recall@K of a random ranking: per query with r relevant of n, 1 − C(n−r, K) / C(n, K)."""
    n = relevant.shape[1]
    k = min(k, n)

    def log_choose(a: int, b: int) -> float:
        return lgamma(a + 1) - lgamma(b + 1) - lgamma(a - b + 1)

    values = [1.0 - (np.exp(log_choose(n - r, k) - log_choose(n, k)) if n - r >= k else 0.0)
              for r in relevant.sum(1).tolist()]
    return float(np.mean(values))


class Retrieval(Component["Retrieval.Params"]):
    requires = frozenset({"data:reports", "data:labels", "text:global"})
    metric_version = "1"

    class Params(TaskParams):
        ks: list[int] = Field(default_factory=lambda: [1, 5, 10], min_length=1)
        split: str = Field("test", description="split of held-out pairs")
        test_cases: int | None = test_cases_field()

    def evaluate(self, encoders: Encoders, source: Any, device: torch.device) -> TaskResult:
        text_encoder = encoders.require_text("retrieval")
        split = source.split(self.params.split)
        n = scored_cases("retrieval", split.images, self.params.test_cases)
        images = encoders.test_embeddings(split.images, n, device)
        reports = text_embeddings(text_encoder, [list(s) for s in split.sentences[:n]], device)
        similarity = images @ reports.t()  # [n, n]
        labels = np.asarray(split.labels)[:n]
        strict = torch.eye(len(labels), dtype=torch.bool)
        semantic = same_finding_set(labels)
        scores: dict[str, float] = {}
        columns, samples = {}, {}
        for direction, matrix in (("i2t", similarity), ("t2i", similarity.t())):
            for name, relevant in (("strict", strict), ("semantic", semantic)):
                for k, hit in hits_at_k(matrix, relevant, self.params.ks).items():
                    column = f"{direction}/{name}/R@{k}"
                    scores[column] = float(hit.float().mean())
                    columns[column] = Column(headline=k == max(self.params.ks), chance=chance_recall(relevant, k))
                    samples[column] = Samples("mean", {"values": hit.numpy()})
        protocol = with_hash({
            "task": "retrieval", "dataset": source.protocol(), "split": self.params.split, "pairs": len(labels),
            "metric": "Recall@K; strict: the paired item only; semantic: any item with the same finding set",
        })
        details = {"semantic_duplicates_per_query": float(semantic.sum(1).float().mean() - 1)}
        return TaskResult(scores, {column: protocol for column in scores}, details, columns, samples)
