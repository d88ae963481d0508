"""SISTA's Sparse Token Alignment, in the style of SPARC (Bica et al., ICML 2024).

[interpretation] SISTA's abstract says STA aligns image patches with the relevant word tokens;
there is no public code. Per report, with unit word vectors w_m and patch vectors p_n::

    s_mn = w_m · p_n
    ŝ_mn = min–max normalised over the patches of word m
    sparsify: threshold (ŝ_mn < 1/N → 0; default), top-k (keep the k largest) or none
    a_mn = ŝ_mn / Σ_n ŝ_mn,   c_m = Σ_n a_mn p_n     (word-grouped visual vector)

and the loss is the symmetric InfoNCE between {c_m} and {w_m} over the words of the same report
(padding masked), averaged per report and then over reports. Vectorised over the batch.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vlpbench.plugin_api import AlignmentInputs, ModuleComponent, mean_over_reports, within_report_infonce


def sparse_alignment_weights(similarity: Tensor, sparsify: str, top_k: int) -> Tensor:
    """Row-normalised alignment weights a [B,M,N] from similarities s [B,M,N]."""
    low = similarity.amin(-1, keepdim=True)
    high = similarity.amax(-1, keepdim=True)
    scaled = (similarity - low) / (high - low).clamp_min(1e-6)
    patches = similarity.shape[-1]
    if sparsify == "threshold":
        scaled = torch.where(scaled >= 1.0 / patches, scaled, torch.zeros_like(scaled))
    elif sparsify == "topk":
        kth = scaled.topk(min(top_k, patches), dim=-1).values[..., -1:]
        scaled = torch.where(scaled >= kth, scaled, torch.zeros_like(scaled))
    return scaled / scaled.sum(-1, keepdim=True).clamp_min(1e-6)


class SparseTokenAlignment(ModuleComponent["SparseTokenAlignment.Params"]):
    reference = "arXiv:2601.08165 (SISTA)"
    official_code = None  # no public code

    requires = frozenset({"image:patches", "text:words"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        sparsify: Literal["threshold", "topk", "none"] = "threshold"
        top_k: int = Field(8, ge=1, description="patches kept per word with sparsify=topk")
        temperature: float = Field(0.07, gt=0)

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        words, mask = inputs.text.word_emb, inputs.text.word_mask
        patches = inputs.image.patch_emb
        similarity = F.normalize(words, dim=-1) @ F.normalize(patches, dim=-1).transpose(1, 2)  # [B,M,N]
        weights = sparse_alignment_weights(similarity, self.params.sparsify, self.params.top_k)
        grouped = weights @ patches  # [B,M,D]
        per_report = within_report_infonce(words, grouped, mask, self.params.temperature)
        return {"sta": mean_over_reports(per_report, mask.any(1))}
