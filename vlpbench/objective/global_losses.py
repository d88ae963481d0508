"""Global image–report losses honouring the miner/weighting contracts.

Softmax InfoNCE (CLIP/ConVIRT), for one direction with logits ``l`` [B,B], targets
``Y = A/rowsum(A)`` (ignored pairs zeroed), weights ``Ω`` and extra columns ``E``::

    loss_i = −Σ_j Y_ij [ l_ij − log( Σ_{k not ignored} Ω_ik e^{l_ik} + Σ_e e^{E_ie} ) ]

with ``Ω = 1`` on the diagonal and on every mined positive (weights act on negatives only).
The loss is the mean of the image→text and text→image directions.

Sigmoid (SigLIP-style): ``z_ij = scale·cos(v_i, t_j) + bias``, labels ``H = +1`` where
``A > ½`` else −1, ``loss = (1/B) Σ_{ij not ignored} w_ij softplus(−H_ij z_ij)``; a negative pair's
weight ``w_ij`` is the mean of the two directions' Ω, extra columns are extra negatives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.core.context import BuildContext
from vlpbench.core.module_component import ModuleComponent
from vlpbench.objective.contracts import DirectionAdjustment, Positives


def normalise(x: Tensor) -> Tensor:
    return F.normalize(x, dim=-1)


def soft_infonce_direction(logits: Tensor, positives: Positives, adjust: DirectionAdjustment) -> Tensor:
    """Mean over anchors of the multi-positive, weighted, masked InfoNCE of one direction."""
    affinity = positives.affinity.to(logits.dtype)
    eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    keep = torch.ones_like(eye) if positives.ignore is None else ~(positives.ignore & ~eye)
    targets = affinity * keep
    targets = targets / targets.sum(1, keepdim=True).clamp_min(1e-12)
    denominator_logits = logits
    if adjust.weight is not None:
        weight = torch.where((affinity > 0) | eye, torch.ones_like(adjust.weight), adjust.weight)
        denominator_logits = logits + torch.log(weight.clamp_min(0))  # log 0 = -inf drops the pair
    denominator_logits = denominator_logits.masked_fill(~keep, float("-inf"))
    if adjust.extra_logits is not None:
        denominator_logits = torch.cat([denominator_logits, adjust.extra_logits.to(logits.dtype)], dim=1)
    log_norm = torch.logsumexp(denominator_logits, dim=1)  # [B]
    numerator = (targets * logits.masked_fill(~keep, 0.0)).sum(1)
    return (log_norm - numerator).mean()


class InfoNCELoss(ModuleComponent["InfoNCELoss.Params"]):
    """CLIP/ConVIRT symmetric InfoNCE with a learnable temperature (METHODS.md, Baseline)."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temperature: float = Field(0.07, gt=0, description="initial temperature τ")
        learnable: bool = True
        max_logit_scale: float = Field(100.0, gt=0, description="clamp of 1/τ, as in CLIP")

    def __init__(self, params: "InfoNCELoss.Params", context: BuildContext | None = None) -> None:
        super().__init__(params, context)
        init = torch.tensor(math.log(1.0 / params.temperature))
        self.log_scale = nn.Parameter(init) if params.learnable else nn.Buffer(init)

    def logit_scale(self) -> Tensor:
        return self.log_scale.exp().clamp(max=self.params.max_logit_scale)

    def forward(self, image: Tensor, text: Tensor, positives: Positives,
                i2t: DirectionAdjustment, t2i: DirectionAdjustment) -> Tensor:
        logits = self.logit_scale() * normalise(image) @ normalise(text).t()
        return 0.5 * (soft_infonce_direction(logits, positives, i2t)
                      + soft_infonce_direction(logits.t(), positives.transposed(), t2i))


class SigmoidLoss(ModuleComponent["SigmoidLoss.Params"]):
    """SigLIP-style pairwise sigmoid loss (learnable scale and bias)."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        scale: float = Field(10.0, gt=0, description="initial logit scale (learned as its log)")
        bias: float = Field(-10.0, description="initial logit bias")
        learnable: bool = True

    def __init__(self, params: "SigmoidLoss.Params", context: BuildContext | None = None) -> None:
        super().__init__(params, context)
        log_scale, bias = torch.tensor(math.log(params.scale)), torch.tensor(float(params.bias))
        make = nn.Parameter if params.learnable else nn.Buffer
        self.log_scale, self.bias = make(log_scale), make(bias)

    def forward(self, image: Tensor, text: Tensor, positives: Positives,
                i2t: DirectionAdjustment, t2i: DirectionAdjustment) -> Tensor:
        z = self.log_scale.exp() * normalise(image) @ normalise(text).t() + self.bias
        return sigmoid_pair_loss(z, positives, i2t, t2i)


def sigmoid_pair_loss(z: Tensor, positives: Positives, i2t: DirectionAdjustment, t2i: DirectionAdjustment) -> Tensor:
    """(1/B) Σ_ij w_ij softplus(−H_ij z_ij) over non-ignored pairs, plus extra negative columns."""
    batch = z.shape[0]
    labels = torch.where(positives.affinity > 0.5, 1.0, -1.0).to(z.dtype)
    eye = torch.eye(batch, dtype=torch.bool, device=z.device)
    keep = torch.ones_like(eye) if positives.ignore is None else ~(positives.ignore & ~eye)
    directional = [w for w in (i2t.weight, None if t2i.weight is None else t2i.weight.t()) if w is not None]
    weight = torch.stack(directional).mean(0) if directional else torch.ones_like(z)
    weight = torch.where(labels > 0, torch.ones_like(weight), weight) * keep
    total = (weight * F.softplus(-labels * z)).sum()
    for extra in (i2t.extra_logits, t2i.extra_logits):
        if extra is not None:
            total = total + F.softplus(extra.to(z.dtype)).sum()
    return total / batch
