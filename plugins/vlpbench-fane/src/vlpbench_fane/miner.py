"""FaNe's semantic positive mining with adaptive normalisation [code: utils/semantic_similarity.py].

For the batch's reports, unit vectors ``r`` from a *frozen* report encoder give ``S = r rᵀ``. The
batch baseline ``o_b = mean_i cos(r_i, mean_j r_j)`` is tracked by an EMA
(``o* = o_b`` at the first step, then ``o* ← 0.05·o_b + 0.95·o*``, detached) and removed:

    S̃ = (S − o*) / (1 − o* + 1e-6),  S̃_ii = κ + 1,  positive ⇔ S̃_ij > κ   (κ = 0.95)

so "how similar is similar" adapts to the corpus instead of being a fixed cosine.

Interpretation (documented): the frozen encoder is Bio_ClinicalBERT's pooler output in the paper;
here it is any local Hugging Face model (``report_encoder: /path``) or, by default, TF-IDF report
vectors, which need no download and are meaningful from the first step. Unlike the official code,
the EMA is a buffer, so it is checkpointed and a resumed run continues it exactly.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vlpbench.plugin_api import (AlignmentInputs, BuildContext, ModuleComponent, Positives, build_report_vectors,
                                 report_similarity)


def adaptive_normalise(similarity: Tensor, baseline: Tensor, kappa: float, eps: float = 1e-6) -> Tensor:
    """S̃ = (S − o*) / (1 − o* + eps) with the diagonal set to κ + 1."""
    normalised = (similarity - baseline) / (1.0 - baseline + eps)
    return normalised.fill_diagonal_(kappa + 1.0)


def batch_baseline(vectors: Tensor) -> Tensor:
    """o_b = mean_i cos(r_i, mean_j r_j) for unit vectors r [B, D]."""
    prototype = vectors.mean(0)
    return (vectors @ prototype / prototype.norm().clamp_min(1e-12)).mean()


class AdaptiveSemanticMiner(ModuleComponent["AdaptiveSemanticMiner.Params"]):
    """Positives = pairs whose adaptively normalised report similarity exceeds κ."""

    reference = "arXiv:2511.12215 (FaNe, AAAI-26)"
    official_code = "https://github.com/Aventador8/FaNe"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        report_encoder: str = Field("tfidf", description="'tfidf' or a local Hugging Face model directory (frozen)")
        kappa: float = Field(0.95, description="threshold κ on the normalised similarity (paper's best: 0.95)")
        momentum: float = Field(0.05, gt=0, le=1, description="weight of the new batch baseline in the EMA")
        eps: float = Field(1e-6, gt=0)

    def __init__(self, params: "AdaptiveSemanticMiner.Params", context: BuildContext) -> None:
        super().__init__(params, context)
        self.reports = build_report_vectors(params.report_encoder, context.corpus, context.corpus_sentences)
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def update_baseline(self, vectors: Tensor) -> Tensor:
        """Advance the EMA with this batch (training only) and return o*."""
        if self.training:
            current = batch_baseline(vectors).detach()
            moved = (1 - self.params.momentum) * self.baseline + self.params.momentum * current
            # the first batch sets the baseline; later ones move it (chosen on the device: no host read)
            self.baseline.copy_(torch.where(self.initialised, moved, current))
            self.initialised.fill_(True)
        return self.baseline

    def normalised_similarity(self, vectors: Tensor) -> Tensor:
        baseline = self.update_baseline(vectors)
        return adaptive_normalise(report_similarity(vectors), baseline, self.params.kappa, self.params.eps)

    def forward(self, inputs: AlignmentInputs) -> Positives:
        vectors = self.reports(inputs.batch.index, inputs.batch)
        normalised = self.normalised_similarity(vectors)
        dtype = inputs.image.global_emb.dtype
        return Positives((normalised > self.params.kappa).to(dtype))
