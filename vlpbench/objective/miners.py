"""Built-in positive miners: ``identity`` (CLIP) and ``oracle`` (label-aware upper bound)."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from vlpbench.core.module_component import ModuleComponent
from vlpbench.core.features import AlignmentInputs
from vlpbench.objective.contracts import Positives


class IdentityMiner(ModuleComponent["IdentityMiner.Params"]):
    """Only the paired report is a positive: A = I, nothing ignored (plain CLIP/ConVIRT)."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def forward(self, inputs: AlignmentInputs) -> Positives:
        return Positives.identity(len(inputs.batch), inputs.image.global_emb.device)


class OracleMiner(ModuleComponent["OracleMiner.Params"]):
    """Pairs whose ground-truth finding sets are identical are positives (MedCLIP-style).

    It reads the batch's labels, which no real method can: it is the upper bound for
    false-negative handling on SynthCXR. ``mode: positive`` makes them positives,
    ``mode: ignore`` only removes them from the negatives.
    """

    requires = frozenset({"data:labels"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        mode: str = Field("positive", pattern="^(positive|ignore)$")

    def forward(self, inputs: AlignmentInputs) -> Positives:
        labels = inputs.batch.labels
        same = (labels.unsqueeze(1) == labels.unsqueeze(0)).all(-1)  # [B,B]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        if self.params.mode == "positive":
            return Positives(same.to(inputs.image.global_emb.dtype))
        return Positives(eye.to(inputs.image.global_emb.dtype), ignore=same & ~eye)
