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
from torch import Tensor, nn

from vlpbench.context import BuildContext
from vlpbench.features import AlignmentInputs


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


def within_report_word_infonce(words: Tensor, grouped: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """Per report, symmetric InfoNCE between w_m and c_m over its real words; loss per report [B]."""
    logits = F.normalize(words, dim=-1) @ F.normalize(grouped, dim=-1).transpose(1, 2) / temperature
    eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
    valid = (mask.unsqueeze(2) & mask.unsqueeze(1)) | eye  # padding keeps its diagonal: finite, unused
    logits = logits.masked_fill(~valid, float("-inf"))
    diagonal = logits.diagonal(dim1=1, dim2=2)
    per_word = 0.5 * ((torch.logsumexp(logits, 2) - diagonal) + (torch.logsumexp(logits, 1) - diagonal))
    per_word = torch.where(mask, per_word, torch.zeros_like(per_word))
    return per_word.sum(1) / mask.sum(1).clamp_min(1)


class SparseTokenAlignment(nn.Module):
    requires = frozenset({"image:patches", "text:words"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        sparsify: Literal["threshold", "topk", "none"] = "threshold"
        top_k: int = Field(8, ge=1, description="patches kept per word with sparsify=topk")
        temperature: float = Field(0.07, gt=0)

    def __init__(self, params: "SparseTokenAlignment.Params", context: BuildContext | None = None) -> None:
        super().__init__()
        self.params = params

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        words, mask = inputs.text.word_emb, inputs.text.word_mask
        patches = inputs.image.patch_emb
        similarity = F.normalize(words, dim=-1) @ F.normalize(patches, dim=-1).transpose(1, 2)  # [B,M,N]
        weights = sparse_alignment_weights(similarity, self.params.sparsify, self.params.top_k)
        grouped = weights @ patches  # [B,M,D]
        per_report = within_report_word_infonce(words, grouped, mask, self.params.temperature)
        reports = mask.any(1).to(per_report.dtype)
        return {"sta": (per_report * reports).sum() / reports.sum().clamp_min(1.0)}
