"""The CM-CGNS cross-attention written one report at a time, as the official code does
(benchmark and equivalence test only; the cluster negatives are left out: they are batched there)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vlpbench.plugin_api import AlignmentInputs
from vlpbench_cmcgns.cross_attention import BidirectionalCrossAttentionHead


def cross_attention_loop(head: BidirectionalCrossAttentionHead, inputs: AlignmentInputs) -> dict[str, Tensor]:
    att, scale = head.attention, math.sqrt(head.attention.dim)
    patch_terms, z1, z2 = [], [], []
    all_sentences, mask = head.sentences(inputs)
    for b in range(inputs.image.patch_emb.shape[0]):
        sentences = all_sentences[b][mask[b]]
        if sentences.shape[0] == 0:
            continue
        patches = inputs.image.patch_emb[b]
        if head.params.normalise_patches:
            patches = F.normalize(patches, dim=-1)
        x_s = torch.sigmoid(att.q_text(sentences) @ att.k_image(patches).t() / scale) @ att.v_image(patches)
        x_p = torch.sigmoid(att.q_image(patches) @ att.k_text(sentences).t() / scale) @ att.v_text(sentences)
        forward = F.cosine_similarity(head.predictor(patches), x_p.detach(), dim=-1).mean()
        backward = F.cosine_similarity(head.predictor(x_p), patches.detach(), dim=-1).mean()
        patch_terms.append(-0.5 * (forward + backward))
        z1.append(sentences)
        z2.append(x_s)
    a, c = F.normalize(torch.cat(z1), dim=-1), F.normalize(torch.cat(z2), dim=-1)
    sentence = F.cross_entropy(a @ c.t() / head.params.temperature, torch.arange(len(a)))
    return {"patch": torch.stack(patch_terms).mean(), "sentence": sentence}
