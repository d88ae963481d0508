"""Pretraining batches: seeded per-rank order, gathered off the training thread, finished on the device.

The pixels stay in the image store (uint8 memory maps, :mod:`vlpbench.data.store`). For each epoch
the main process draws, from a generator seeded by (run seed, epoch), the sample order and every
augmentation parameter of the epoch (:class:`EpochPlan`: a few bytes per sample), exactly as the
former in-memory path drew them. A :class:`torch.utils.data.DataLoader` over the epoch's *steps*
then gathers each step's uint8 images, tokens and labels in worker processes (or in the calling
thread with ``workers = 0``), in pinned memory with prefetch; the training loop copies them
``non_blocking`` and :func:`prepare_images` normalises and augments them where the model runs.

With ``pretrain.sentence_shuffle`` (FaNe's per-load shuffle) each report's sentences come in an
order that is a hash of (seed, epoch, sample), applied to the tokens here; the batch carries
``extras["sentence_shuffle"]`` so that frozen report encoders re-encode the same orders.

Because everything random is drawn up front, a batch is a pure function of (seed, epoch, step):
the number of workers does not change it, a resumed run (mid-epoch included) sees the batches an
uninterrupted one would, and every rank of a multi-process run draws the same numbers and takes its
own rows of each global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vlpbench.core.features import Batch
from vlpbench.models.tokenization import TokenizedReports, sentence_keys, shuffle_sentences
from vlpbench.objective.scope import World

PIXEL_MEAN, PIXEL_STD = 0.5, 0.25
#: Augmentation parameters per sample: angle, scale, shift x, shift y, contrast, brightness.
AUGMENT_FIELDS = 6


def to_model_images(images: np.ndarray | Tensor) -> Tensor:
    """Images [n,H,W] (uint8 0–255 from the store, or float in [0,1]) → normalised float [n,1,H,W]."""
    tensor = images if isinstance(images, Tensor) else torch.from_numpy(np.array(images))  # a copy: maps are read-only
    return normalise(tensor.unsqueeze(1))


def normalise(images: Tensor) -> Tensor:
    """uint8 or [0,1] float images → ``(x − 0.5) / 0.25`` in float32 (on the images' device)."""
    scaled = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return (scaled - PIXEL_MEAN) / PIXEL_STD


def draw_augmentation(generator: torch.Generator, n: int) -> Tensor:
    """The random parameters of :func:`light_augment` for ``n`` samples, float [n, 6], drawn in the
    order the in-memory path always drew them (so seeded runs keep their augmentations)."""
    angle = (torch.rand(n, generator=generator) - 0.5) * (2 * 5 * torch.pi / 180)
    scale = 0.95 + 0.1 * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) - 0.5) * 0.08
    contrast = 0.9 + 0.2 * torch.rand(n, generator=generator)
    brightness = (torch.rand(n, generator=generator) - 0.5) * 0.2
    return torch.stack([angle, scale, shift[:, 0], shift[:, 1], contrast, brightness], 1)


def light_augment(images: Tensor, params: Tensor) -> Tensor:
    """Small random affine (±5°, ±4 % shift, 0.95–1.05 scale) and contrast jitter, batched, on the
    images' device. ``params`` [B, 6] come from :func:`draw_augmentation`.

    No horizontal flips: they would swap the laterality that the reports describe.
    """
    params = params.to(images.device, images.dtype)
    angle, scale, shift_x, shift_y, contrast, brightness = params.unbind(1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    background = images.amin(dim=(1, 2, 3), keepdim=True)
    warped = F.grid_sample(images - background, grid, align_corners=False, padding_mode="zeros") + background
    return warped * contrast.view(-1, 1, 1, 1) + brightness.view(-1, 1, 1, 1)


def prepare_images(batch: Batch) -> Tensor:
    """The model's input of a batch on its device: float [B,1,H,W], normalised if the batch holds
    the store's uint8 pixels (floats are taken as normalised already), augmented if the batch
    carries augmentation parameters."""
    images = normalise(batch.images) if batch.images.dtype == torch.uint8 else batch.images
    augment = batch.extras.get("augment")
    return light_augment(images, augment) if augment is not None else images


@dataclass
class EpochPlan:
    """Everything random about one epoch: the sample order and the augmentation of every sample."""

    order: Tensor  # long [n]: the epoch's permutation of the split
    augment: Tensor | None  # float [steps, batch_size, 6] (global batch), or None without augmentation
    #: (seed, epoch, sentence slots) of FaNe's per-load sentence shuffle, or None (see
    #: :func:`~vlpbench.models.tokenization.sentence_keys`: a hash, so nothing else is drawn)
    shuffle: tuple[int, int, int] | None = None


@dataclass
class PretrainData:
    """The pretraining split: uint8 images (a memory map of the store), tokens and labels."""

    images: np.ndarray  # uint8 [n, H, W] (memory-mapped) or float [n, H, W] in [0, 1]
    tokens: TokenizedReports
    labels: Tensor
    #: sentences of each report (what the frozen report encoders and the shuffle's orders refer to)
    sentence_counts: Tensor | None = None  # long [n]
    shuffle_sentences: bool = False

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(self) // batch_size

    def plan(self, epoch: int, seed: int, batch_size: int, augment: bool) -> EpochPlan:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(self), generator=generator)
        draws = None
        if augment:
            steps = self.steps_per_epoch(batch_size)
            draws = torch.stack([draw_augmentation(generator, batch_size) for _ in range(steps)]) if steps else \
                torch.zeros(0, batch_size, AUGMENT_FIELDS)
        shuffle = None
        if self.shuffle_sentences:
            slots = int(self.tokens.sentence_index.max().clamp_min(0)) + 1
            if self.sentence_counts is not None and len(self.sentence_counts):
                slots = max(slots, int(self.sentence_counts.max()))
            shuffle = (seed, epoch, slots)
        return EpochPlan(order, draws, shuffle)

    def gather(self, plan: EpochPlan, step: int, batch_size: int, world: World = World()) -> Batch:
        """This rank's rows of global batch ``step``: rank r takes rows r·b … (r+1)·b − 1 (b = the
        global batch over the world size), so no sample is seen twice and none is dropped."""
        per_rank = batch_size // world.size
        mine = slice(world.rank * per_rank, (world.rank + 1) * per_rank)
        index = plan.order[step * batch_size:(step + 1) * batch_size][mine]
        if isinstance(self.images, Tensor):
            images = self.images[index]
        else:  # a memory map: read its rows in file order, then put them in batch order
            rows = index.numpy()
            ascending = np.argsort(rows, kind="stable")
            images = torch.from_numpy(np.ascontiguousarray(self.images[rows[ascending]]))
            images = images[torch.from_numpy(np.argsort(ascending, kind="stable"))]
        if images.dim() == 3:
            images = images.unsqueeze(1)
        extras: dict = {"augment": plan.augment[step, mine].clone()} if plan.augment is not None else {}
        tokens = self.tokens
        input_ids, sentence_index = tokens.input_ids[index], tokens.sentence_index[index]
        if plan.shuffle is not None:
            seed, epoch, slots = plan.shuffle
            input_ids, sentence_index = shuffle_sentences(input_ids, sentence_index,
                                                          sentence_keys(seed, epoch, index, slots))
            extras["sentence_shuffle"] = plan.shuffle  # the frozen report encoders re-derive each order
            extras["sample_ids"] = index.tolist()  # ... of these samples (a host list: no device read)
        extras["num_sentences"] = int(sentence_index.max().clamp_min(0)) + 1  # known here, on the CPU
        return Batch(images, input_ids, tokens.attention_mask[index], sentence_index,
                     self.labels[index], index, extras=extras)

    def epoch_batches(self, epoch: int, seed: int, batch_size: int, augment: bool, world: World = World(),
                      start_step: int = 0, workers: int = 0, pin_memory: bool = False,
                      prefetch: int = 4) -> Iterator[Batch]:
        """The epoch's batches from ``start_step`` on, each this rank's share of the global batch.

        ``workers > 0`` gathers in that many DataLoader worker processes (``prefetch`` batches
        ahead each); the batches are the same whatever ``workers`` is.
        """
        plan = self.plan(epoch, seed, batch_size, augment)
        steps = range(start_step, self.steps_per_epoch(batch_size))
        if workers == 0 and not pin_memory:
            for step in steps:
                yield self.gather(plan, step, batch_size, world)
            return
        loader = torch.utils.data.DataLoader(
            _StepBatches(self, plan, batch_size, world), batch_size=None, sampler=steps, num_workers=workers,
            pin_memory=pin_memory, prefetch_factor=prefetch if workers else None,
            multiprocessing_context="fork" if workers else None)
        yield from loader


class _StepBatches(torch.utils.data.Dataset):
    """Map-style dataset over the steps of one epoch (what DataLoader workers gather)."""

    def __init__(self, data: PretrainData, plan: EpochPlan, batch_size: int, world: World) -> None:
        self.data, self.plan, self.batch_size, self.world = data, plan, batch_size, world

    def __len__(self) -> int:
        return self.data.steps_per_epoch(self.batch_size)

    def __getitem__(self, step: int) -> Batch:
        return self.data.gather(self.plan, step, self.batch_size, self.world)


#: The former name (third-party code may import it).
PretrainTensors = PretrainData
