"""FaNe's global multi-positive sigmoid loss and hard-negative-aware intra-modal term [code: models/fane.py]."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.plugin_api import (AlignmentInputs, BuildContext, DirectionAdjustment, ModuleComponent,
                                 NegativeAdjustment, Positives, sigmoid_pair_loss)


class SigmoidMultiPositiveLoss(ModuleComponent["SigmoidMultiPositiveLoss.Params"]):
    """L_mp = (1/B) Σ_ij softplus(H_ij·(−a·s_ij + b)),  s_ij = cos(v_i, t_j)/0.1.

    As in the official code: ``a`` is learnable, initialised to log(1/0.07) ≈ 2.66 and used as is
    (not exponentiated); ``b`` is learnable, initialised to −10, and enters with a plus sign (so its
    effective SigLIP bias is +10 at the start); one image→text matrix, summed and divided by B.
    ``H = +1`` for every mined positive (``A > ½``), so all of them are pulled together. Through the
    shared contracts, ignored pairs are skipped, negative weights scale a negative pair's term and
    extra candidate columns are extra negatives (the official code has neither).
    """

    reference = "arXiv:2511.12215 (FaNe, AAAI-26)"
    official_code = "https://github.com/Aventador8/FaNe"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temperature: float = Field(0.1, gt=0, description="fixed divisor of the cosine")
        scale_init: float = Field(math.log(1 / 0.07), description="initial a (used as is)")
        bias_init: float = Field(-10.0, description="initial b")
        learnable: bool = True

    def __init__(self, params: "SigmoidMultiPositiveLoss.Params", context: BuildContext | None = None) -> None:
        super().__init__(params, context)
        make = nn.Parameter if params.learnable else nn.Buffer
        self.scale = make(torch.tensor(float(params.scale_init)))
        self.bias = make(torch.tensor(float(params.bias_init)))

    def forward(self, image: Tensor, text: Tensor, positives: Positives,
                i2t: DirectionAdjustment, t2i: DirectionAdjustment) -> Tensor:
        s = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t() / self.params.temperature
        # softplus(H(−a s + b)) = softplus(−H z) with z = a s − b
        return sigmoid_pair_loss(self.scale * s - self.bias, positives, i2t, t2i)


def weighted_negative_similarity(logits: Tensor, negatives: Tensor, temperature: float,
                                 normalisation: Literal["softmax", "linear"]) -> Tensor:
    """Σ_{j∈N(i)} w_ij s_ij per anchor; rows without negatives give 0."""
    if normalisation == "softmax":
        weights = torch.softmax((logits / temperature).masked_fill(~negatives, float("-inf")), dim=1)
    else:
        positive_part = logits.clamp_min(0) * negatives
        weights = positive_part / positive_part.sum(1, keepdim=True).clamp_min(1e-12)
    weights = torch.nan_to_num(weights, nan=0.0) * negatives
    return (weights * logits).sum(1)


class HardNegativeIntraModal(ModuleComponent["HardNegativeIntraModal.Params"]):
    """L_hn: push each anchor away from its hardest *true* negatives, within each modality.

    For anchor i, N(i) = the pairs the miner treats as negatives (not positive, not ignored, not i).
    ``s^T = t tᵀ/0.07``, ``s^I = v vᵀ/0.07``; ``w_ij = softmax_{j∈N(i)}(s_ij/0.07)`` so that hard
    negatives count most; ``L_hn = (1/B) Σ_i ½[Σ_j w^T_ij s^T_ij + Σ_j w^I_ij s^I_ij]``. The two
    divisions by 0.07 are what the official code does; the weights are not detached there either.

    It is a negative weighting that leaves the global loss untouched (Ω = 1) and adds its own term.
    Interpretation: a paper summary gives a linear normalisation instead of the softmax;
    ``normalisation: linear`` uses ``w_ij = max(s_ij, 0) / Σ_{k∈N(i)} max(s_ik, 0)``.
    """

    reference = "arXiv:2511.12215 (FaNe, AAAI-26)"
    official_code = "https://github.com/Aventador8/FaNe"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temperature: float = Field(0.07, gt=0, description="divisor of the intra-modal cosines")
        weight_temperature: float = Field(0.07, gt=0, description="divisor inside the softmax weighting")
        normalisation: Literal["softmax", "linear"] = "softmax"
        weight: float = Field(1.0, ge=0, description="λ of the term")

    def forward(self, inputs: AlignmentInputs, positives: Positives) -> NegativeAdjustment:
        p = self.params
        v = F.normalize(inputs.image.global_emb, dim=-1)
        t = F.normalize(inputs.text.global_emb, dim=-1)
        batch = v.shape[0]
        eye = torch.eye(batch, dtype=torch.bool, device=v.device)
        negatives = (positives.affinity <= 0) & ~eye
        if positives.ignore is not None:
            negatives &= ~positives.ignore
        text_term = weighted_negative_similarity(t @ t.t() / p.temperature, negatives, p.weight_temperature, p.normalisation)
        image_term = weighted_negative_similarity(v @ v.t() / p.temperature, negatives, p.weight_temperature, p.normalisation)
        loss = 0.5 * (text_term + image_term).sum() / batch
        return NegativeAdjustment(losses={"hn": p.weight * loss})
