"""Built-in negative weighting: ``uniform`` (every negative counts once: Ω = 1)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from vlpbench.core.module_component import ModuleComponent
from vlpbench.core.features import AlignmentInputs
from vlpbench.objective.contracts import NegativeAdjustment, Positives


class UniformWeighting(ModuleComponent["UniformWeighting.Params"]):
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def forward(self, inputs: AlignmentInputs, positives: Positives) -> NegativeAdjustment:
        return NegativeAdjustment()
