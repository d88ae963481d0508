"""SISTA's Semantic-aware Instance Alignment: report similarity removes false negatives.

[interpretation] The abstract says SIA uses inter-report similarity "to eliminate the false
negatives"; there is no public code. Here: a report–report cosine similarity ``s`` — from a
*frozen* report encoder (TF-IDF by default, or a local Hugging Face model; ``source: frozen``) or
from the learned text encoder's global embeddings, detached (``source: learned``) — marks the
pairs ``i ≠ j`` with ``s_ij > threshold`` as semantic matches, which then are, by ``mode``:

- ``mask`` (default): ignored — neither positive nor negative (dropped from the denominator);
- ``multi-positive``: extra positives (``A_ij = 1``);
- ``soft``: soft targets ``A_ij = (s_ij − threshold) / (1 − threshold)`` in (0, 1].

With a threshold above 1 nothing is matched and every mode is plain CLIP.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vlpbench.plugin_api import (AlignmentInputs, BuildContext, ModuleComponent, Positives, build_report_vectors,
                                 report_similarity)


def eliminate_false_negatives(similarity: Tensor, threshold: float, mode: str) -> Positives:
    """Positives from a report-similarity matrix [B,B] (see the module docstring)."""
    batch = similarity.shape[0]
    eye = torch.eye(batch, dtype=torch.bool, device=similarity.device)
    matched = (similarity > threshold) & ~eye
    identity = eye.to(similarity.dtype)
    if mode == "mask":
        return Positives(identity, ignore=matched)
    if mode == "multi-positive":
        return Positives(identity + matched.to(similarity.dtype))
    soft = ((similarity - threshold) / max(1.0 - threshold, 1e-6)).clamp(0.0, 1.0)
    return Positives(identity + soft * matched)


class FalseNegativeElimination(ModuleComponent["FalseNegativeElimination.Params"]):
    reference = "arXiv:2601.08165 (SISTA)"
    official_code = None  # no public code

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        mode: Literal["mask", "multi-positive", "soft"] = "mask"
        source: Literal["frozen", "learned"] = Field("frozen", description="frozen report encoder or the learned text encoder")
        report_encoder: str = Field("tfidf", description="source=frozen: 'tfidf' or a local Hugging Face model directory")
        threshold: float = Field(0.9, description="cosine above which two reports count as the same")

    def __init__(self, params: "FalseNegativeElimination.Params", context: BuildContext) -> None:
        super().__init__(params, context)
        self.reports = build_report_vectors(params.report_encoder, context.corpus, context.corpus_sentences) if params.source == "frozen" else None

    def similarity(self, inputs: AlignmentInputs) -> Tensor:
        if self.reports is not None:
            return report_similarity(self.reports(inputs.batch.index, inputs.batch))
        text = F.normalize(inputs.text.global_emb.detach(), dim=-1)
        return text @ text.t()

    def forward(self, inputs: AlignmentInputs) -> Positives:
        similarity = self.similarity(inputs).to(inputs.image.global_emb.dtype)
        return eliminate_false_negatives(similarity, self.params.threshold, self.params.mode)
