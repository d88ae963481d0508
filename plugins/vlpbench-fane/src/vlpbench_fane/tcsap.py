"""Text-conditioned sparse attention pooling, TCSAP [code: modules/sparse_local_attention.py].

Per report, its sentences query its patches (D = 128)::

    q = W_q S (T×D),  k = W_k P,  val = W_v P (N×D)
    M_pn = sigmoid(MLP([q_p; k_n])),  MLP = Linear(2D→D) – ReLU – Linear(D→1)
    a_pn = sigmoid((q_p·k_n)·M_pn / √D)             (sigmoid, not softmax; no top-k)
    c_p  = LayerNorm(Linear(Σ_n a_pn val_n))

L_tc is the symmetric InfoNCE (τ = 0.07) between the attended vectors c and the sentence vectors S
with negatives only from the other sentences of the same report; L_spa = mean |M| (the L1
sparsity term). Both are averaged per report, then over the reports, as the official code does.

Vectorised over the batch: sentences are padded to the longest report and masked; the mask MLP's
first layer is split into its q and k halves, so ``[q_p; k_n]`` is never materialised.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.plugin_api import (AlignmentInputs, BuildContext, ModuleComponent, masked_mean, mean_over_reports,
                                 within_report_infonce)


class SparseTextConditionedAttention(nn.Module):
    """The TCSAP module: sentences [B,T,E] attend over patches [B,N,E] → attended [B,T,E], mask M."""

    def __init__(self, embed_dim: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.query, self.key, self.value = nn.Linear(embed_dim, dim), nn.Linear(embed_dim, dim), nn.Linear(embed_dim, dim)
        self.mask_hidden = nn.Linear(2 * dim, dim)
        self.mask_out = nn.Linear(dim, 1)
        self.out = nn.Sequential(nn.Linear(dim, embed_dim), nn.LayerNorm(embed_dim))

    def sparse_mask(self, q: Tensor, k: Tensor) -> Tensor:
        """M [B,T,N] = sigmoid(MLP([q; k])) with the first layer applied to each half."""
        w_q, w_k = self.mask_hidden.weight[:, : self.dim], self.mask_hidden.weight[:, self.dim:]
        hidden = (q @ w_q.t()).unsqueeze(2) + (k @ w_k.t()).unsqueeze(1) + self.mask_hidden.bias
        return torch.sigmoid(self.mask_out(F.relu(hidden)).squeeze(-1))

    def forward(self, sentences: Tensor, patches: Tensor) -> tuple[Tensor, Tensor]:
        q, k, v = self.query(sentences), self.key(patches), self.value(patches)
        mask = self.sparse_mask(q, k)
        attention = torch.sigmoid((q @ k.transpose(1, 2)) * mask / math.sqrt(self.dim))
        return self.out(attention @ v), mask


class TCSAP(ModuleComponent["TCSAP.Params"]):
    """FaNe's local head: returns ``tc`` (within-report sentence InfoNCE) and ``spa`` (L1 of M)."""

    reference = "arXiv:2511.12215 (FaNe, AAAI-26)"
    official_code = "https://github.com/Aventador8/FaNe"

    requires = frozenset({"image:patches", "text:sentences"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        dim: int = Field(128, ge=4, description="attention width D")
        temperature: float = Field(0.07, gt=0)
        sparsity_weight: float = Field(1.0, ge=0, description="λ of L_spa (relative to L_tc)")

    def __init__(self, params: "TCSAP.Params", context: BuildContext) -> None:
        super().__init__(params, context)
        self.attention = SparseTextConditionedAttention(context.embed_dim, params.dim)

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        text, image = inputs.text, inputs.image
        attended, mask = self.attention(text.sentence_emb, image.patch_emb)
        valid = text.sentence_mask
        reports = valid.any(1)
        tc = within_report_infonce(text.sentence_emb, attended, valid, self.params.temperature)
        spa = masked_mean(mask.abs(), valid.unsqueeze(2).expand_as(mask), (1, 2))
        return {"tc": mean_over_reports(tc, reports),
                "spa": self.params.sparsity_weight * mean_over_reports(spa, reports)}
