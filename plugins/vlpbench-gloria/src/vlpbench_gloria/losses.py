"""GLoRIA's global loss [code: gloria/loss/gloria_loss.py:60-82].

``S_ij = temp3 · (v_i·t_j) / max(‖v_i‖‖t_j‖, 1e-8)`` with temp3 = 10 (it multiplies);
``g0 = mean_i CE(S_i·, i)`` (image→text), ``g1 = mean_j CE(S_·j, j)`` (text→image) and the
objective adds both (``gloria_model.py:77-80``): the two directions are SUMMED, not averaged.

Through the shared contracts each direction is vlpbench's multi-positive weighted InfoNCE
(:func:`vlpbench.plugin_api.soft_infonce_direction`), which with the identity miner
and no weighting is exactly the cross-entropy above.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vlpbench.plugin_api import DirectionAdjustment, ModuleComponent, Positives, soft_infonce_direction


def gloria_cosine(x: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    """Pairwise cosine [n, m] as GLoRIA computes it: x·y / max(‖x‖‖y‖, eps) (``gloria_loss.py:60-74``)."""
    norms = x.norm(dim=-1, keepdim=True) * y.norm(dim=-1, keepdim=True).t()
    return (x @ y.t()) / norms.clamp_min(eps)


class GloriaGlobalLoss(ModuleComponent["GloriaGlobalLoss.Params"]):
    """g0 + g1 on ``scale · cosine`` logits (scale = temp3 = 10, fixed)."""

    reference = "Huang et al., GLoRIA, ICCV 2021"
    official_code = "https://github.com/marshuang80/gloria"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        scale: float = Field(10.0, gt=0, description="temp3: multiplies the cosine (= 1/τ with τ 0.1)")
        image_to_text_weight: float = Field(1.0, ge=0, description="weight of g0 (official: 1, summed)")
        text_to_image_weight: float = Field(1.0, ge=0, description="weight of g1 (official: 1, summed)")
        eps: float = Field(1e-8, gt=0, description="clamp of the norm product")

    def forward(self, image: Tensor, text: Tensor, positives: Positives,
                i2t: DirectionAdjustment, t2i: DirectionAdjustment) -> Tensor:
        p = self.params
        logits = p.scale * gloria_cosine(image, text, p.eps)
        return (p.image_to_text_weight * soft_infonce_direction(logits, positives, i2t)
                + p.text_to_image_weight * soft_infonce_direction(logits.t(), positives.transposed(), t2i))
