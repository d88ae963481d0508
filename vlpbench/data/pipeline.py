"""In-memory pretraining batches: images as one tensor, reports tokenised once.

SynthCXR fits in memory, so batches are gathered by index from preallocated tensors (no
DataLoader worker processes, nothing to make nondeterministic). The epoch's order comes from a
generator seeded by (run seed, epoch), so a resumed run sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vlpbench.features import Batch
from vlpbench.models.tokenization import TokenizedReports
from vlpbench.objective.scope import World

PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


def to_model_images(images: np.ndarray) -> Tensor:
    """float [n,H,W] in [0,1] → normalised float [n,1,H,W]."""
    return ((torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)) - PIXEL_MEAN) / PIXEL_STD).unsqueeze(1)


@dataclass
class PretrainTensors:
    images: Tensor
    tokens: TokenizedReports
    labels: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(self) // batch_size

    def epoch_batches(self, epoch: int, seed: int, batch_size: int, augment: bool,
                      world: World = World()) -> Iterator[Batch]:
        """The epoch's batches of ``batch_size`` samples (the global batch), in seeded order.

        With several processes, each yields its own contiguous share of every global batch (rank
        r: rows r·b … (r+1)·b − 1, b = batch_size / world size): no sample twice, none dropped,
        and the augmentation of a sample is the one a single process would give it.
        """
        per_rank = batch_size // world.size
        mine = slice(world.rank * per_rank, (world.rank + 1) * per_rank)
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(self), generator=generator)
        for step in range(self.steps_per_epoch(batch_size)):
            index = order[step * batch_size:(step + 1) * batch_size]
            images = self.images[index[mine]]
            if augment:
                images = light_augment(images, generator, total=len(index), rows=mine)
            index = index[mine]
            yield Batch(images, self.tokens.input_ids[index], self.tokens.attention_mask[index],
                        self.tokens.sentence_index[index], self.labels[index], index)


def light_augment(images: Tensor, generator: torch.Generator, total: int | None = None,
                  rows: slice | None = None) -> Tensor:
    """Small random affine (±5°, ±4 % shift, 0.95–1.05 scale) and contrast jitter, batched.

    No horizontal flips: they would swap the laterality that the reports describe. The random
    draws are made for ``total`` samples (the global batch) and ``rows`` of them applied, so every
    process of a multi-process run draws the same numbers and each sample gets its own.
    """
    n = images.shape[0] if total is None else total  # draws per call: one per sample of the global batch
    rows = rows or slice(0, n)
    rand = lambda *shape: torch.rand(*shape, generator=generator)[rows]  # noqa: E731
    angle = (rand(n) - 0.5) * (2 * 5 * torch.pi / 180)
    scale = 0.95 + 0.1 * rand(n)
    shift = (rand(n, 2) - 0.5) * 0.08
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    background = images.amin(dim=(1, 2, 3), keepdim=True)
    warped = F.grid_sample(images - background, grid, align_corners=False, padding_mode="zeros") + background
    contrast = 0.9 + 0.2 * rand(n, 1, 1, 1)
    brightness = (rand(n, 1, 1, 1) - 0.5) * 0.2
    return warped * contrast + brightness
