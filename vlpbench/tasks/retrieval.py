"""Image↔report retrieval on held-out pairs: Recall@K, strict and semantic.

Embeddings of the held-out split's images and reports give a cosine matrix. *Strict* recall counts
a hit only when the paired report (image) is among the top K; *semantic* recall counts any report
(image) whose set of positive findings equals the query's. The gap between the two is how much
false negatives distort a retrieval score. Vectorised: one top-K per direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from vlpbench.data.pipeline import to_model_images
from vlpbench.tasks.base import Encoders, TaskParams, TaskResult, image_embeddings, text_embeddings, with_hash


def recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, ks: list[int]) -> dict[int, float]:
    """Share of queries (rows) with a relevant candidate among their top K columns."""
    top = similarity.topk(min(max(ks), similarity.shape[1]), dim=1).indices  # [n, K]
    hits = relevant.gather(1, top)  # [n, K] bool
    return {k: float(hits[:, :k].any(1).float().mean()) for k in ks}


class Retrieval:
    requires = frozenset({"data:reports", "data:labels", "text:global"})

    class Params(TaskParams):
        ks: list[int] = Field(default_factory=lambda: [1, 5, 10], min_length=1)
        split: str = Field("test", description="split of held-out pairs")

    def __init__(self, params: "Retrieval.Params", context: Any = None) -> None:
        self.params = params

    def evaluate(self, encoders: Encoders, source: Any, device: torch.device) -> TaskResult:
        text_encoder = encoders.require_text("retrieval")
        split = source.split(self.params.split)
        images = encoders.memo("image_embeddings", split.images, (str(device),),
                               lambda: image_embeddings(encoders.image, to_model_images(split.images), device))
        reports = text_embeddings(text_encoder, [list(s) for s in split.sentences], device)
        similarity = images @ reports.t()  # [n, n]
        labels = torch.from_numpy(np.asarray(split.labels))
        strict = torch.eye(len(labels), dtype=torch.bool)
        semantic = (labels.unsqueeze(1) == labels.unsqueeze(0)).all(-1)
        scores: dict[str, float] = {}
        for direction, matrix in (("i2t", similarity), ("t2i", similarity.t())):
            for name, relevant in (("strict", strict), ("semantic", semantic)):
                for k, value in recall_at_k(matrix, relevant, self.params.ks).items():
                    scores[f"{direction}/{name}/R@{k}"] = value
        protocol = with_hash({
            "task": "retrieval", "dataset": source.protocol(), "split": self.params.split, "pairs": len(labels),
            "metric": "Recall@K; strict: the paired item only; semantic: any item with the same finding set",
        })
        details = {"semantic_duplicates_per_query": float(semantic.sum(1).float().mean() - 1)}
        return TaskResult(scores, {column: protocol for column in scores}, details)
