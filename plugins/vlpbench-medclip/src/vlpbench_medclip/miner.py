"""MedCLIP's soft targets from label similarity [code: medclip/losses.py:49,68-76].

The official loss compares every image's label vector with every sentence's,
``S = y^img (y^txt)ᵀ`` (raw integer dot products, not clamped), and trains the image→text logits
towards ``softmax(S, dim=1)`` and the text→image logits towards ``softmax(Sᵀ, dim=1)``
(temperature 1). In vlpbench a pair's image and report share one label vector ``y`` (the dataset's
findings), so ``S = y yᵀ``.

Through the shared contracts (``vlpbench/objective/contracts.py``) a global loss turns the
affinity ``A`` into targets ``A / rowsum(A)`` per direction, with ``Aᵀ`` for text→image. This miner
returns ``A = exp((S − max S)/T)``: its rows normalise to ``softmax(S_i·/T)`` and its columns to
``softmax(S_·j/T)`` — exactly both of MedCLIP's targets (a per-row scaling could not give both: the
column softmax needs one constant for the whole matrix). ``A ≤ 1`` with 1 at the largest
similarity; with 0/1 labels the diagonal is the largest entry of its row (``y_i·y_j ≤ y_i·y_i``),
but it equals 1 only on the rows that reach ``max S``: MedCLIP gives the paired report no special
weight (BASELINES.md, *Ambiguities*). With ``similarity: cosine`` (the cleaner option) every
non-empty label vector has ``S_ii = 1 = max S``, so ``A_ii = 1`` as the contract asks, identical
finding sets get ``A = 1`` (as the oracle miner), and ``temperature`` sets how fast partial overlaps
fade (0.1: a pair sharing half its findings gets e^{−5}).

"No finding": MedCLIP's 14 CheXpert labels include "No Finding", so a normal study has a non-zero
label vector. SynthCXR and MIMIC-CXR's 5 competition labels have no such column; with
``no_finding: true`` (default) a column that is 1 exactly when no other label is positive is
appended (unless the dataset already names one), so that normal studies match each other.

Reads ``batch.labels`` (``requires = {"data:labels"}``): ``vlpbench validate`` refuses a dataset
without labels. Targets carry no gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vlpbench.plugin_api import AlignmentInputs, BuildContext, ModuleComponent, Positives

NO_FINDING_NAMES = {"no_finding", "no finding", "nofinding", "normal"}


def with_no_finding(labels: Tensor) -> Tensor:
    """Append a column that is 1 where no label is positive (MedCLIP's "No Finding")."""
    normal = (labels > 0).sum(1, keepdim=True) == 0
    return torch.cat([labels, normal.to(labels.dtype)], dim=1)


def label_similarity(labels: Tensor, similarity: str) -> Tensor:
    """S = y yᵀ (``dot``) or the cosine of the label vectors (``cosine``; a zero vector gives 0)."""
    if similarity == "cosine":
        labels = labels / labels.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return labels @ labels.t()


def soft_affinity(similarity: Tensor, temperature: float) -> Tensor:
    """A = exp((S − max S)/T): rows normalise to softmax(S_i·/T), columns to softmax(S_·j/T)."""
    return torch.exp((similarity - similarity.max()) / temperature)


class LabelSimilarityMiner(ModuleComponent["LabelSimilarityMiner.Params"]):
    """Soft targets from the similarity of the pairs' finding labels (see the module docstring)."""

    reference = "Wang et al., MedCLIP, EMNLP 2022"
    official_code = "https://github.com/RyanWangZf/MedCLIP"

    requires = frozenset({"data:labels"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        similarity: Literal["dot", "cosine"] = Field(
            "dot", description="dot: the official raw dot products of the label vectors; cosine: normalised first")
        temperature: float = Field(1.0, gt=0, description="softmax temperature T of the targets (official: 1)")
        no_finding: bool = Field(
            True, description="append a 'no finding' label (1 when no other label is positive) unless the dataset has one")

    def __init__(self, params: "LabelSimilarityMiner.Params", context: BuildContext | None = None) -> None:
        super().__init__(params, context)
        names = {n.lower() for n in (context.label_names if context is not None else ())}
        self.append_no_finding = params.no_finding and not (names & NO_FINDING_NAMES)

    def labels(self, inputs: AlignmentInputs) -> Tensor:
        labels = inputs.batch.labels.to(inputs.image.global_emb.dtype)
        return with_no_finding(labels) if self.append_no_finding else labels

    @torch.no_grad()
    def forward(self, inputs: AlignmentInputs) -> Positives:
        similarity = label_similarity(self.labels(inputs), self.params.similarity)
        return Positives(soft_affinity(similarity, self.params.temperature))
