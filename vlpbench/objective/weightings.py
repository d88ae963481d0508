"""Built-in negative weighting: ``uniform`` (every negative counts once: Ω = 1)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from torch import nn

from vlpbench.core.context import BuildContext
from vlpbench.core.features import AlignmentInputs
from vlpbench.objective.contracts import NegativeAdjustment, Positives


class UniformWeighting(nn.Module):
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, params: BaseModel | None = None, context: BuildContext | None = None) -> None:
        super().__init__()

    def forward(self, inputs: AlignmentInputs, positives: Positives) -> NegativeAdjustment:
        return NegativeAdjustment()
