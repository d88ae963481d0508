"""The shared contracts that let any miner and any weighting work with any global loss.

METHODS.md, "The shared contracts":

- a positive miner returns ``Positives``: an affinity ``A ∈ [0,1]^{B×B}`` with ``A_ii = 1`` (how
  much report j is a positive for image i) and a boolean ``ignore`` mask of pairs that are
  neither positive nor negative;
- each negative weighting returns a ``NegativeAdjustment`` per direction: a weight matrix
  ``Ω ≥ 0`` on the negatives (weights of several weightings multiply), extra candidate columns
  given as ready-scaled logits (e.g. a cluster centroid's cosine × 3), and loss terms of its own.

Rows are anchors: for image→text the anchors are images and the candidates reports, for
text→image the other way round. ``A`` is given image-major; the text→image direction uses ``Aᵀ``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Positives:
    affinity: Tensor  # float [B, B], image i × report j, diagonal 1
    ignore: Tensor | None = None  # bool [B, B], pairs dropped from both numerator and denominator

    @staticmethod
    def identity(batch_size: int, device: torch.device | str = "cpu") -> "Positives":
        return Positives(torch.eye(batch_size, device=device))

    def transposed(self) -> "Positives":
        return Positives(self.affinity.t(), None if self.ignore is None else self.ignore.t())


@dataclass
class DirectionAdjustment:
    weight: Tensor | None = None  # float [B, B] ≥ 0 on negatives
    extra_logits: Tensor | None = None  # float [B, E], already scaled, appended to the candidates


@dataclass
class NegativeAdjustment:
    image_to_text: DirectionAdjustment = field(default_factory=DirectionAdjustment)
    text_to_image: DirectionAdjustment = field(default_factory=DirectionAdjustment)
    losses: dict[str, Tensor] = field(default_factory=dict)


def combine_directions(adjustments: list[DirectionAdjustment]) -> DirectionAdjustment:
    """Multiply the weights and concatenate the extra columns of several weightings."""
    weight: Tensor | None = None
    extras: list[Tensor] = []
    for adj in adjustments:
        if adj.weight is not None:
            weight = adj.weight if weight is None else weight * adj.weight
        if adj.extra_logits is not None:
            extras.append(adj.extra_logits)
    return DirectionAdjustment(weight, torch.cat(extras, dim=1) if extras else None)
