"""GLoRIA's word–region local loss [code: gloria/loss/gloria_loss.py:19-137].

For report i (words w_i1…w_iL, L_i of them) and EVERY image j (regions r_j1…r_jN), all B² pairs:

    s_nl  = r_jn · w_il                               raw dot products (no normalisation)
    p_n·  = softmax_l(s_n·)                           per region, over the report's words
    a_l·  = softmax_n(temp1 · p_·l)                   per word, over regions (temp1 = 4 multiplies)
    c_l   = Σ_n a_ln r_jn
    R(j,i)= log Σ_l exp(temp2 · cos(w_il, c_l))       temp2 = 5; cos = x·y / max(‖x‖‖y‖, 1e-8)
    sim   = temp3 · R   [images × reports]            temp3 = 10
    l0 = mean_j CE(sim_j·, j) (image→text),  l1 = mean_i CE(sim_·i, i) (text→image),  L = l0 + l1

The double softmax (words first, then 4 × probability over regions) is the official code's
(from AttnGAN); the paper writes one softmax over regions. The words of a report are [CLS] and its
real word tokens, [SEP] and padding excluded (``gloria_model.py:53-55``, ``gloria_loss.py:100``);
``words: tokens`` drops the [CLS] as well. Vectorised over the B² pairs with padding masked.

Negative scope: the other reports and images of the batch are the negatives; in the ``gathered``
scope every process's words and regions are gathered first (rows of other processes are constants,
this process's rows keep their gradient), so each process computes the loss of the whole batch.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vlpbench.plugin_api import AlignmentInputs, ModuleComponent, gather_constant, gather_rows


def word_mask(inputs: AlignmentInputs, words: str) -> Tensor:
    """[CLS] (position 0) + the real word tokens, or the word tokens only (a report without any
    falls back to its [CLS], so every report has at least one word)."""
    mask = inputs.text.word_mask.clone()
    first = torch.zeros_like(mask)
    first[:, 0] = True
    if words == "cls_and_words":
        return mask | first
    return torch.where(mask.any(1, keepdim=True), mask, first)


def gloria_local_similarity(words: Tensor, mask: Tensor, regions: Tensor,
                            temp1: float, temp2: float, eps: float = 1e-8) -> Tensor:
    """R(j, i) [images, reports] for words [B_t, M, D] (+ mask [B_t, M]) and regions [B_i, N, D]."""
    s = torch.einsum("ind,tld->tinl", regions, words)  # [B_t, B_i, N, M]
    s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
    p = torch.softmax(s, dim=3)  # over words, per region
    a = torch.softmax(temp1 * p, dim=2)  # over regions, per word
    context = torch.einsum("tinl,ind->tild", a, regions)  # [B_t, B_i, M, D]
    dot = (words[:, None] * context).sum(-1)
    norms = words.norm(dim=-1)[:, None] * context.norm(dim=-1)
    cosine = dot / norms.clamp_min(eps)  # [B_t, B_i, M]
    logits = (temp2 * cosine).masked_fill(~mask[:, None, :], float("-inf"))
    return torch.logsumexp(logits, dim=2).t()  # [B_i, B_t]


def _gather_padded(x: Tensor, inputs: AlignmentInputs, differentiable: bool) -> Tensor:
    """All-gather [b, M, …] rows of every process, padded to the longest M (padding is masked)."""
    longest = int(gather_constant(torch.tensor([x.shape[1]], device=x.device), inputs.world).max())
    if x.shape[1] < longest:
        pad = [0, 0] * (x.dim() - 2) + [0, longest - x.shape[1]]
        x = F.pad(x, pad)
    return gather_rows(x, inputs.gradient, inputs.world) if differentiable else gather_constant(x, inputs.world)


class GloriaLocal(ModuleComponent["GloriaLocal.Params"]):
    """l0 + l1 of the word–region attention (see the module docstring); term ``local``."""

    reference = "Huang et al., GLoRIA, ICCV 2021"
    official_code = "https://github.com/marshuang80/gloria"

    requires = frozenset({"image:patches"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temp1: float = Field(4.0, gt=0, description="multiplies the word probabilities before the softmax over regions")
        temp2: float = Field(5.0, gt=0, description="multiplies the word–context cosine inside the log-sum-exp")
        temp3: float = Field(10.0, gt=0, description="multiplies the pair similarity R (the logits)")
        words: Literal["cls_and_words", "tokens"] = Field(
            "cls_and_words", description="cls_and_words: [CLS] + real word tokens (official); tokens: word tokens only")
        image_to_text_weight: float = Field(1.0, ge=0, description="weight of l0 (official: 1, summed)")
        text_to_image_weight: float = Field(1.0, ge=0, description="weight of l1 (official: 1, summed)")
        eps: float = Field(1e-8, gt=0, description="clamp of the norm product in the cosine")

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        p = self.params
        words, mask, regions = inputs.text.word_emb, word_mask(inputs, p.words), inputs.image.patch_emb
        if inputs.scope == "gathered" and inputs.world.distributed:
            words = _gather_padded(words, inputs, differentiable=True)
            mask = _gather_padded(mask, inputs, differentiable=False)
            regions = gather_rows(regions, inputs.gradient, inputs.world)
        sim = p.temp3 * gloria_local_similarity(words, mask, regions, p.temp1, p.temp2, p.eps)  # [images, reports]
        labels = torch.arange(sim.shape[0], device=sim.device)
        l0 = F.cross_entropy(sim, labels)
        l1 = F.cross_entropy(sim.t(), labels)
        return {"local": p.image_to_text_weight * l0 + p.text_to_image_weight * l1}
