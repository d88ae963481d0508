"""Sparse token alignment written one report at a time (benchmark and equivalence test only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vlpbench.plugin_api import AlignmentInputs
from vlpbench_sista.sta import SparseTokenAlignment


def sta_loop(head: SparseTokenAlignment, inputs: AlignmentInputs) -> dict[str, Tensor]:
    p = head.params
    losses = []
    for b in range(inputs.image.patch_emb.shape[0]):
        words = inputs.text.word_emb[b][inputs.text.word_mask[b]]
        if words.shape[0] == 0:
            continue
        patches = inputs.image.patch_emb[b]
        n = patches.shape[0]
        s = F.normalize(words, dim=-1) @ F.normalize(patches, dim=-1).t()
        s = (s - s.min(1, keepdim=True).values) / (s.max(1, keepdim=True).values - s.min(1, keepdim=True).values).clamp_min(1e-6)
        if p.sparsify == "threshold":
            s = s * (s >= 1.0 / n)
        elif p.sparsify == "topk":
            s = s * (s >= s.topk(min(p.top_k, n), dim=1).values[:, -1:])
        a = s / s.sum(1, keepdim=True).clamp_min(1e-6)
        grouped = a @ patches
        w, c = F.normalize(words, dim=-1), F.normalize(grouped, dim=-1)
        labels = torch.arange(words.shape[0])
        losses.append(0.5 * (F.cross_entropy(w @ c.t() / p.temperature, labels)
                             + F.cross_entropy(c @ w.t() / p.temperature, labels)))
    return {"sta": torch.stack(losses).mean()}
