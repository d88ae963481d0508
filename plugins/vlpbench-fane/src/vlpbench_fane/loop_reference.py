"""TCSAP written one report at a time, the way the official code does it.

Only for the benchmark (speed-up of the vectorised head) and the equivalence test; never used in
training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vlpbench.plugin_api import AlignmentInputs
from vlpbench_fane.tcsap import TCSAP


def tcsap_loop(head: TCSAP, inputs: AlignmentInputs) -> dict[str, Tensor]:
    attention = head.attention
    tc_terms, spa_terms = [], []
    for b in range(inputs.image.patch_emb.shape[0]):
        sentences = inputs.text.sentence_emb[b][inputs.text.sentence_mask[b]]  # (T_b, E)
        if sentences.shape[0] == 0:
            continue
        patches = inputs.image.patch_emb[b]
        q, k, v = attention.query(sentences), attention.key(patches), attention.value(patches)
        t, n = q.shape[0], k.shape[0]
        pairs = torch.cat([q.unsqueeze(1).expand(t, n, -1), k.unsqueeze(0).expand(t, n, -1)], dim=-1)
        mask = torch.sigmoid(attention.mask_out(F.relu(attention.mask_hidden(pairs))).squeeze(-1))
        weights = torch.sigmoid((q @ k.t()) * mask / math.sqrt(attention.dim))
        attended = attention.out(weights @ v)
        a, c = F.normalize(sentences, dim=-1), F.normalize(attended, dim=-1)
        labels = torch.arange(t)
        tau = head.params.temperature
        tc_terms.append(0.5 * (F.cross_entropy(a @ c.t() / tau, labels) + F.cross_entropy(c @ a.t() / tau, labels)))
        spa_terms.append(mask.abs().mean())
    return {"tc": torch.stack(tc_terms).mean(), "spa": head.params.sparsity_weight * torch.stack(spa_terms).mean()}
