"""The example components ``vlpbench new-plugin`` writes: one working, vectorised module per kind
(``MODULES``: kind → (module name, class name, summary, source)), each with a docstring template
(``DOCSTRING``) asking for the source paper, the formula and every interpretation. The objective's kinds
and the task are written here; the components that read the data (image encoder, dataset, text
encoder) come from :mod:`vlpbench.devkit.scaffold.encoders`."""

from vlpbench.devkit.scaffold.encoders import DATA_MODULES

DOCSTRING = '''"""{summary}

Source: <paper title, arXiv id or venue; official code repository and file, if any>.
Formula: <the formula this implements, in the notation of vlpbench's METHODS.md>.
Interpretation: <every choice the source does not fix, and the alternatives kept configurable>.
"""'''

MODULES: dict[str, tuple[str, str, str, str]] = {
    "positive_miner": ("miner", "SimilarityMiner", "pairs whose detached text embeddings are similar become positives", '''
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from vlpbench.plugin_api import AlignmentInputs, ModuleComponent, Positives


class SimilarityMiner(ModuleComponent["SimilarityMiner.Params"]):
    {docstring}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        threshold: float = Field(0.95, description="cosine above which two reports count as the same")

    def forward(self, inputs: AlignmentInputs) -> Positives:
        text = F.normalize(inputs.text.global_emb.detach(), dim=-1)  # detached: a miner sends no gradient
        similar = (text @ text.t()) > self.params.threshold
        eye = torch.eye(len(text), dtype=torch.bool, device=text.device)
        return Positives((similar | eye).to(inputs.image.global_emb.dtype))
'''),
    "negative_weighting": ("weighting", "HardnessWeighting", "up-weights hard negatives: Ω_ij = 1 + α·max(cos(v_i, t_j), 0)", '''
from __future__ import annotations

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from vlpbench.plugin_api import AlignmentInputs, DirectionAdjustment, ModuleComponent, NegativeAdjustment, Positives


class HardnessWeighting(ModuleComponent["HardnessWeighting.Params"]):
    {docstring}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        alpha: float = Field(1.0, ge=0, description="extra weight of a negative per unit of cosine")

    def forward(self, inputs: AlignmentInputs, positives: Positives) -> NegativeAdjustment:
        v = F.normalize(inputs.image.global_emb, dim=-1)
        t = F.normalize(inputs.text.global_emb, dim=-1)
        weight = 1.0 + self.params.alpha * (v @ t.t()).detach().clamp_min(0)
        return NegativeAdjustment(DirectionAdjustment(weight=weight), DirectionAdjustment(weight=weight.t()))
'''),
    "local_head": ("head", "MaxSimilarityHead", "word-patch max-similarity alignment (FILIP-style), within each report", '''
from __future__ import annotations

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vlpbench.plugin_api import AlignmentInputs, ModuleComponent, mean_over_reports


class MaxSimilarityHead(ModuleComponent["MaxSimilarityHead.Params"]):
    {docstring}

    requires = frozenset({{"image:patches", "text:words"}})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temperature: float = Field(0.1, gt=0)

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        words = F.normalize(inputs.text.word_emb, dim=-1)  # [B,M,D]
        patches = F.normalize(inputs.image.patch_emb, dim=-1)  # [B,N,D]
        mask = inputs.text.word_mask
        best = (words @ patches.transpose(1, 2)).amax(-1) / self.params.temperature  # [B,M]
        per_report = -(best * mask).sum(1) / mask.sum(1).clamp_min(1)  # pull each word to its best patch
        return {{"maxsim": mean_over_reports(per_report, mask.any(1))}}
'''),
}

MODULES.update({
    "auxiliary": ("auxiliary", "CrossModalRegression", "predicts each image's global embedding from its report's (per-sample, no negatives)", """
from __future__ import annotations

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vlpbench.plugin_api import AlignmentInputs, ModuleComponent


class CrossModalRegression(ModuleComponent["CrossModalRegression.Params"]):
    {docstring}

    requires = frozenset()
    batch_negatives = False  # a per-sample term: it compares nothing across the batch

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        hidden: int = Field(64, ge=1, description="width of the predictor's hidden layer")

    def __init__(self, params: "CrossModalRegression.Params", context=None) -> None:
        super().__init__(params, context)  # stores self.params and self.context
        dim = context.embed_dim if context is not None else 32
        self.predictor = nn.Sequential(nn.Linear(dim, params.hidden), nn.GELU(), nn.Linear(params.hidden, dim))

    def forward(self, inputs: AlignmentInputs) -> dict[str, Tensor]:
        target = F.normalize(inputs.image.global_emb.detach(), dim=-1)  # stop-gradient target
        predicted = F.normalize(self.predictor(inputs.text.global_emb), dim=-1)
        return {{"regression": (predicted - target).square().sum(-1).mean()}}
"""),
    "global_loss": ("loss", "FixedTemperatureInfoNCE", "symmetric InfoNCE with a fixed temperature and label smoothing towards the positives", """
from __future__ import annotations

import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vlpbench.plugin_api import DirectionAdjustment, ModuleComponent, Positives, soft_infonce_direction


class FixedTemperatureInfoNCE(ModuleComponent["FixedTemperatureInfoNCE.Params"]):
    {docstring}

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        temperature: float = Field(0.1, gt=0, description="fixed temperature τ")

    def forward(self, image: Tensor, text: Tensor, positives: Positives,
                i2t: DirectionAdjustment, t2i: DirectionAdjustment) -> Tensor:
        # soft_infonce_direction applies the miner's positives and the weightings' adjustments
        logits = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t() / self.params.temperature
        return 0.5 * (soft_infonce_direction(logits, positives, i2t)
                      + soft_infonce_direction(logits.t(), positives.transposed(), t2i))
"""),
    "task": ("task", "PrototypeProbe", "nearest-prototype probe: per finding, cosine to the mean positive minus the mean negative training embedding; macro AUROC", """
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torchmetrics.functional.classification import binary_auroc

from vlpbench.plugin_api import Column, Component, Encoders, TaskParams, TaskResult, frozen_global_features, with_hash


class PrototypeProbe(Component["PrototypeProbe.Params"]):
    {docstring}

    requires = frozenset({{"data:labels"}})
    metric_version = "1"

    class Params(TaskParams):
        train_split: str = Field("train", description="split the prototypes are averaged over")
        test_split: str = Field("test", description="split scored")

    def evaluate(self, encoders: Encoders, source: Any, device: torch.device) -> TaskResult:
        train, test = source.split(self.params.train_split), source.split(self.params.test_split)
        features = {{}}
        for name, split in (("train", train), ("test", test)):
            # read from the image store a batch at a time (never the whole split as floats)
            features[name] = F.normalize(frozen_global_features(encoders.image, split.images, device,
                                                                precision=encoders.precision), dim=-1)
        train_labels = torch.from_numpy(np.asarray(train.labels)).bool()
        test_labels = torch.from_numpy(np.asarray(test.labels)).long()
        per_finding = {{}}
        for k, finding in enumerate(source.label_names):
            positive, negative = train_labels[:, k], ~train_labels[:, k]
            if not positive.any() or not negative.any() or test_labels[:, k].min() == test_labels[:, k].max():
                continue  # no prototype, or nothing to rank: not scorable
            prototypes = F.normalize(torch.stack([features["train"][positive].mean(0),
                                                  features["train"][negative].mean(0)]), dim=-1)
            score = features["test"] @ prototypes[0] - features["test"] @ prototypes[1]
            per_finding[finding] = float(binary_auroc(score, test_labels[:, k]))
        scores = {{"auroc": float(np.mean(list(per_finding.values()))) if per_finding else float("nan")}}
        protocol = with_hash({{"task": "prototype_probe", "dataset": source.protocol(),
                              "train_split": self.params.train_split, "test_split": self.params.test_split,
                              "metric": "macro AUROC over scorable findings (torchmetrics binary_auroc)"}})
        return TaskResult(scores, {{"auroc": protocol}}, {{"per_finding": per_finding}},
                          {{"auroc": Column(headline=True, chance=0.5)}})
"""),
})
MODULES.update(DATA_MODULES)  # the encoders and the dataset (vlpbench.devkit.scaffold.encoders)
