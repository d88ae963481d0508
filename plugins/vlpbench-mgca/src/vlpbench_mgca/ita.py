"""MGCA's instance-wise alignment, ITA [code: mgca/models/mgca/mgca_module.py:101-109].

``S_ij = v_i·t_j / 0.07`` on L2-normalised embeddings; ``L_ita = mean_i CE(S_i·, i) + mean_j CE(S_·j, j)``
— the two directions SUMMED. Through the shared contracts each direction is vlpbench's
multi-positive weighted InfoNCE, exact with the identity miner.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vlpbench.plugin_api import DirectionAdjustment, ModuleComponent, Positives, soft_infonce_direction


class InstanceAlignment(ModuleComponent["InstanceAlignment.Params"]):
    reference = "Wang et al., MGCA, NeurIPS 2022"
    official_code = "https://github.com/HKU-MedAI/MGCA"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temperature: float = Field(0.07, gt=0, description="fixed τ (softmax_temperature, mgca_module.py:36,420)")
        image_to_text_weight: float = Field(1.0, ge=0, description="weight of the image→text term (official: 1)")
        text_to_image_weight: float = Field(1.0, ge=0, description="weight of the text→image term (official: 1)")

    def forward(self, image: Tensor, text: Tensor, positives: Positives,
                i2t: DirectionAdjustment, t2i: DirectionAdjustment) -> Tensor:
        p = self.params
        logits = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t() / p.temperature
        return (p.image_to_text_weight * soft_infonce_direction(logits, positives, i2t)
                + p.text_to_image_weight * soft_infonce_direction(logits.t(), positives.transposed(), t2i))
