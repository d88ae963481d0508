"""ConVIRT's bidirectional image–report loss [code: vilmedic/blocks/losses/selfsup/ConVIRTLoss.py:12-31].

With ``c_ij = cos(v_i, u_j)`` (image i, report j; each vector divided by ``max(‖x‖, 1e-8)``)::

    ℓ^{v→u}_i = −log( e^{c_ii/τ} / Σ_k e^{c_ik/τ} )        (image→text, anchors are images)
    ℓ^{u→v}_i = −log( e^{c_ii/τ} / Σ_k e^{c_ki/τ} )        (text→image, anchors are reports)
    L = mean_i ( λ ℓ^{v→u}_i + (1 − λ) ℓ^{u→v}_i ),   τ = 0.1, λ = 0.75

(``config/SELFSUP/convirt-mimic.yml:36-39``). ``style: mgca`` is the loss of MGCA's ConVIRT
baseline instead (``mgca/models/convirt/convirt_module.py:55-77``): τ = 0.07 and the two directions
SUMMED with weight 1 each — the numbers in MGCA's tables come from that loss, not from λ = 0.75.

Through the shared contracts each direction is vlpbench's multi-positive weighted InfoNCE
(:func:`vlpbench.plugin_api.soft_infonce_direction`): with the identity miner and no
weighting it is exactly the formula above; a miner's positives become soft targets, ignored pairs
leave the denominator, negative weights and extra columns enter it.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vlpbench.plugin_api import BuildContext, DirectionAdjustment, ModuleComponent, Positives, soft_infonce_direction

#: style → (τ, weight of image→text, weight of text→image)
STYLES = {"vilmedic": (0.1, 0.75, 0.25), "mgca": (0.07, 1.0, 1.0)}


class ConVIRTLoss(ModuleComponent["ConVIRTLoss.Params"]):
    """λ-weighted bidirectional InfoNCE with a fixed temperature (see the module docstring)."""

    reference = "Zhang et al., ConVIRT, 2020 (the loss as ViLMedic and BenchX implement it)"
    official_code = "https://github.com/jbdel/vilmedic"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        style: Literal["vilmedic", "mgca"] = Field(
            "vilmedic", description="vilmedic: τ 0.1, λ 0.75 on image→text, 0.25 on text→image (ViLMedic/BenchX); "
                                    "mgca: τ 0.07, both directions summed (MGCA's ConVIRT baseline)")
        temperature: float | None = Field(None, gt=0, description="fixed τ; default: the style's (0.1 / 0.07)")
        image_to_text_weight: float | None = Field(
            None, ge=0, description="λ on the image→text term; default: the style's (0.75 / 1)")
        text_to_image_weight: float | None = Field(
            None, ge=0, description="weight of the text→image term; default: 1 − λ for vilmedic, 1 for mgca")
        eps: float = Field(1e-8, gt=0, description="norms are clamped to at least eps before dividing")

    def __init__(self, params: "ConVIRTLoss.Params", context: BuildContext | None = None) -> None:
        super().__init__(params, context)
        temperature, i2t, t2i = STYLES[params.style]
        self.temperature = params.temperature if params.temperature is not None else temperature
        self.i2t_weight = params.image_to_text_weight if params.image_to_text_weight is not None else i2t
        if params.text_to_image_weight is not None:
            self.t2i_weight = params.text_to_image_weight
        elif params.style == "vilmedic":
            self.t2i_weight = 1.0 - self.i2t_weight
        else:
            self.t2i_weight = t2i
        if self.t2i_weight < 0:
            raise ValueError(f"convirt.loss: image_to_text_weight {self.i2t_weight} > 1 leaves the text→image "
                             "term a negative weight 1 − λ; give λ in [0, 1] or set text_to_image_weight.")

    def forward(self, image: Tensor, text: Tensor, positives: Positives,
                i2t: DirectionAdjustment, t2i: DirectionAdjustment) -> Tensor:
        v = F.normalize(image, dim=-1, eps=self.params.eps)
        u = F.normalize(text, dim=-1, eps=self.params.eps)
        logits = v @ u.t() / self.temperature  # [images, reports]
        return (self.i2t_weight * soft_infonce_direction(logits, positives, i2t)
                + self.t2i_weight * soft_infonce_direction(logits.t(), positives.transposed(), t2i))
