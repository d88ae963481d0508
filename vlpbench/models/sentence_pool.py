"""Attention pool over a report's sentence vectors: the global report vector of FaNe and CM-CGNS.

[code: FaNe ``codes/fane/modules/sentence_pool.py`` (used at ``models/fane.py:64,325-329``);
CM-CGNS ``cgns/models/cgns/utils/sentence_pool.py`` (used at ``cgns_module.py:73,295-300``)]
Both official codes build the global text vector this way instead of from BERT's [CLS]/pooler
output: per report, the mean of its sentence vectors is prepended as a query token, one multi-head
self-attention runs over ``[mean; S_1..S_T]`` (q/k/v projections with biases, an output
projection, 8 heads, no positional embedding, no dropout), and the first token's output is the
global vector. Only that first token is kept, so only its query is computed here.

Vectorised over the batch: sentences are padded ``[B, T, D]`` with a mask ``[B, T]``; padded
sentences are left out of the mean and masked out of the attention (the official loops over
reports of different lengths). The mean token is always attendable, so a report without
sentences still gets a finite vector.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vlpbench.core.errors import ConfigError


class SentenceAttentionPool(nn.Module):
    """``[B,T,D]`` sentence vectors + mask ``[B,T]`` → global vectors ``[B,D]``."""

    def __init__(self, dim: int, heads: int = 8) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"text_encoder: the sentence attention pool's {heads} heads must divide the embedding "
                              f"size {dim}; set model.embed_dim to a multiple of {heads} or change pool_heads.")
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, dim)

    def forward(self, sentences: Tensor, mask: Tensor) -> Tensor:
        batch, count, dim = sentences.shape
        head_dim = dim // self.heads
        weights = mask.unsqueeze(-1).to(sentences.dtype)
        mean = (sentences * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # [B,D], real sentences only
        tokens = torch.cat([mean.unsqueeze(1), sentences], dim=1)  # [B,T+1,D]
        attendable = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)  # [B,T+1]
        query = self.q_proj(mean).view(batch, self.heads, 1, head_dim)
        keys = self.k_proj(tokens).view(batch, count + 1, self.heads, head_dim).transpose(1, 2)
        values = self.v_proj(tokens).view(batch, count + 1, self.heads, head_dim).transpose(1, 2)
        scores = query @ keys.transpose(-1, -2) / math.sqrt(head_dim)  # [B,H,1,T+1]
        scores = scores.masked_fill(~attendable[:, None, None, :], float("-inf"))
        pooled = torch.softmax(scores, dim=-1) @ values  # [B,H,1,d]
        return self.c_proj(pooled.reshape(batch, dim))
