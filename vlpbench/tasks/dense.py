"""What the dense tasks (segmentation, detection) share: frozen feature maps, fraction subsets,
and the train-with-early-stopping loop over precomputed features.

Frozen feature maps are computed once per checkpoint and split, a batch at a time from the image
store, and reused across label fractions and between the two tasks; they are held in memory, on
disk or recomputed per batch under a byte budget (:mod:`vlpbench.tasks.features`). Only the
decoder or head trains. Model selection uses the validation split only; the test split is
scored once, with the selected state.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vlpbench.core.capabilities import declared
from vlpbench.core.errors import check_termination
from vlpbench.tasks.base import Encoders, TaskParams, nested_stratified_fractions
from vlpbench.tasks.features import DiskMaps, FeatureCache, MemoryMaps, RecomputedMaps, dense_maps, read_rows


class DenseTaskParams(TaskParams):
    """Parameters every dense task shares: target, fractions, seeds and the head's training."""

    findings: list[str] | None = Field(None, description="findings whose masks or boxes are the target "
                                                         "(default: all local findings)")
    fractions: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0])
    sampling_seed: int = Field(42, description="seed of the label-fraction draw (recorded)")
    train_seed: int = 0
    min_stride: int = Field(4, ge=1, description="finest encoder stage fed to the decoder or head")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    batch_size: int = Field(32, ge=1)
    max_epochs: int | list[int] = Field(
        12, description="epochs of a head's training (the cosine schedule decays over them): one number for every "
                        "fraction, or one per fraction (in the order of `fractions`), e.g. shorter heads at 1 % "
                        "where several are averaged")
    patience: int = Field(3, ge=1)
    schedule: Literal["constant", "cosine"] = Field(
        "constant", exclude_if=lambda value: value == "constant",  # runs from before the option keep their identity
        description="learning rate over the head's training: constant, or cosine decay to 0 over "
                                "max_epochs (a head then ends at a small step size, so its seed matters less)")
    grad_clip: float | None = Field(
        None, gt=0, exclude_if=lambda value: value is None,  # runs from before the option keep their identity
        description="clip the head's gradient to this global norm before each step (None: no clipping); a "
                    "large early step can send a head where it never recovers")
    min_steps_per_epoch: int = Field(10, ge=1, description="small fractions are cycled to at least this many steps per epoch")
    max_steps_per_epoch: int | None = Field(
        None, ge=1, description="cap on the steps of an epoch: a large training set is then seen over several "
                                "epochs, so that a larger fraction costs no more than this (None: one full pass)")
    heads: int | list[int] = Field(
        1, exclude_if=lambda value: value == 1,  # runs from before the option keep their identity
        description="k heads trained per fraction from different seeds (head j: train_seed + 1000·j), their "
                    "test scores averaged: the score's downstream noise shrinks by about √k. One number for "
                    "every fraction, or one per fraction (in the order of `fractions`)")
    head_selection: Literal["mean", "best_val"] = Field(
        "mean", exclude_if=lambda value: value == "mean",  # runs from before the option keep their identity
        description="with k heads: mean (the score averages all k) or best_val (the head with the lowest "
                    "validation loss is scored: restarts, chosen on the validation split only)")

    @model_validator(mode="after")
    def _heads_match_fractions(self) -> "DenseTaskParams":
        if isinstance(self.heads, list) and (len(self.heads) != len(self.fractions) or min(self.heads) < 1):
            raise ValueError(f"heads {self.heads} must be one count ≥ 1 per fraction of {self.fractions} "
                             f"(or a single count for every fraction)")
        if isinstance(self.heads, int) and self.heads < 1:
            raise ValueError(f"heads must be at least 1, got {self.heads}")
        epochs = self.max_epochs if isinstance(self.max_epochs, list) else [self.max_epochs]
        if (isinstance(self.max_epochs, list) and len(epochs) != len(self.fractions)) or min(epochs, default=0) < 1:
            raise ValueError(f"max_epochs {self.max_epochs} must be one count ≥ 1 per fraction of {self.fractions} "
                             f"(or a single count for every fraction)")
        return self

    def _at(self, value: int | list[int], fraction: float) -> int:
        """A setting that is one count for every fraction, or one per fraction, at ``fraction``."""
        return value if isinstance(value, int) else value[self.fractions.index(fraction)]

    def heads_at(self, fraction: float) -> int:
        """How many heads train at ``fraction``."""
        return self._at(self.heads, fraction)

    def epochs_at(self, fraction: float) -> int:
        """How many epochs a head trains at ``fraction`` (at most: early stopping may end it sooner)."""
        return self._at(self.max_epochs, fraction)


def scored_heads(params: DenseTaskParams, fits: list[dict[str, float]]) -> list[int]:
    """Which of a fraction's heads enter its score: all of them (``mean``), or the one with the
    lowest validation loss (``best_val``; the first on ties)."""
    if params.head_selection == "mean" or len(fits) == 1:
        return list(range(len(fits)))
    return [min(range(len(fits)), key=lambda i: fits[i]["best_val_loss"])]


def heads_protocol(params: DenseTaskParams, fraction: float) -> dict[str, Any]:
    """What the protocol records of a fraction's heads (nothing for one head, as before the option)."""
    k = params.heads_at(fraction)
    return {} if k == 1 else {"heads": k, "head_selection": params.head_selection}


#: seeds of a fraction's heads are this far apart, so that the heads of train seeds 0, 1, 2, … (the
#: repetitions of ``benchmarks/bench_noise.py``) never share a seed
HEAD_SEED_STRIDE = 1000


def head_seed(train_seed: int, head: int) -> int:
    """The seed of head ``head`` (0-based) of a fraction: initialisation and order of that head."""
    return train_seed + HEAD_SEED_STRIDE * head


#: The former name of the in-memory maps (third-party code may import it).
FrozenMaps = MemoryMaps


def frozen_feature_maps(encoder: nn.Module, images: Any, device: torch.device, min_stride: int = 4,
                        batch_size: int = 128, cache: FeatureCache | None = None, precision: str = "fp32",
                        what: str = "split") -> MemoryMaps | DiskMaps | RecomputedMaps:
    """Pre-projection feature maps of ``images`` [n,H,W] (the store's uint8, or floats in [0,1]), in
    eval mode, computed a batch at a time and placed by ``cache`` (see :mod:`vlpbench.tasks.features`)."""
    return dense_maps(encoder, images, device, min_stride, batch_size, cache, precision, what)


class CoarserLevels:
    """The levels of finer maps (any placement) that an encoder gives at a coarser ``min_stride``:
    the levels of stride ≥ ``min_stride``, or the coarsest one when none is (as the encoders'
    ``feature_maps``). A task that reads coarser maps then shares the finer ones already computed
    for the same images instead of running the encoder again."""

    def __init__(self, maps: Any, image_size: int, min_stride: int) -> None:
        strides = [image_size / w for _, w in maps.strides_shapes]
        kept = [i for i, stride in enumerate(strides) if stride >= min_stride] or [len(strides) - 1]
        self.maps, self.first = maps, kept[0]
        self.placement = getattr(maps, "placement", "memory")

    def __len__(self) -> int:
        return len(self.maps)

    def batch(self, index: Tensor, device: torch.device) -> list[Tensor]:
        return self.maps.batch(index, device)[self.first:]

    @property
    def channels(self) -> list[int]:
        return self.maps.channels[self.first:]

    @property
    def strides_shapes(self) -> list[tuple[int, int]]:
        return self.maps.strides_shapes[self.first:]


def split_feature_maps(encoders: Encoders, splits: dict[str, Any], device: torch.device,
                       min_stride: int) -> dict[str, MemoryMaps | DiskMaps | RecomputedMaps | CoarserLevels]:
    """The maps of each split, shared with the other tasks of the evaluation (:meth:`Encoders.memo`):
    where maps of a finer stride are already there for the same images (segmentation at stride 4,
    detection at 8), their coarser levels, without a second encoder pass."""
    return {name: _shared_maps(encoders, name, s, device, min_stride) for name, s in splits.items()}


def _shared_maps(encoders: Encoders, name: str, split: Any, device: torch.device,
                 min_stride: int) -> MemoryMaps | DiskMaps | RecomputedMaps | CoarserLevels:
    images = split.images
    for finer in range(1, min_stride):
        if encoders.memoised("feature_maps", images, (str(device), finer)):
            maps = encoders.memo("feature_maps", images, (str(device), finer), lambda: None)
            return CoarserLevels(maps, int(images.shape[-1]), min_stride)
    return encoders.memo("feature_maps", images, (str(device), min_stride),
                         lambda: frozen_feature_maps(encoders.image, images, device, min_stride, cache=encoders.cache,
                                                     precision=encoders.precision,
                                                     what=f"{name} split ({len(split)} images)"))


class MaskRows:
    """The union of ``findings``' masks of a split, read a batch of rows at a time (never the whole
    split as floats): bool [b, H, W] rows of ``split.any_mask(findings)``.

    Splits with ``mask_bits`` (SynthCXR and the real datasets: bit k set where local finding k is;
    [n, 1, 1] zeros for a dataset without masks) are read row by row from the image store; other
    splits fall back to their own ``any_mask`` over the whole split.
    """

    def __init__(self, split: Any, findings: Sequence[str], local_findings: Sequence[str]) -> None:
        self.split, self.count = split, len(split)
        self.image_shape = tuple(split.images.shape[1:])
        local = tuple(declared(split, "local_findings") or local_findings)
        bits = declared(split, "mask_bits")
        if bits is None or getattr(bits, "ndim", 0) != 3 or any(f not in local for f in findings):
            self._bits, self._whole = None, np.asarray(split.any_mask(findings))  # its own errors, as before
        else:
            self._bits, self._whole = bits, None
            self._flag = sum(1 << local.index(f) for f in findings)

    def __len__(self) -> int:
        return self.count

    def rows(self, rows: np.ndarray | slice) -> np.ndarray:
        if self._whole is not None:
            return np.asarray(self._whole[rows])

        mask = (read_rows(self._bits, rows) & self._flag) != 0
        return np.broadcast_to(mask, (mask.shape[0], *self.image_shape)) if mask.shape[1:] != self.image_shape else mask

    def batch(self, rows: Tensor | np.ndarray, device: torch.device) -> Tensor:
        """float [b, 1, H, W] targets of ``rows`` on ``device`` (what the losses take)."""
        rows = rows.cpu().numpy() if isinstance(rows, Tensor) else rows
        return torch.from_numpy(np.ascontiguousarray(self.rows(rows))).unsqueeze(1).float().to(device)

    def any_per_image(self, chunk: int = 1024) -> np.ndarray:
        """bool [n]: whether each image has a positive pixel (read in chunks)."""
        return np.concatenate([self.rows(slice(i, i + chunk)).reshape(min(chunk, self.count - i), -1).any(1)
                               for i in range(0, self.count, chunk)]) if self.count else np.zeros(0, bool)


def learning_rate_schedule(optimizer: torch.optim.Optimizer, schedule: str,
                           total_steps: int) -> torch.optim.lr_scheduler.LambdaLR | None:
    """None for a constant learning rate; for ``"cosine"`` a per-step factor ``½(1 + cos(π·t/T))``
    that reaches 0 at step ``total_steps`` (and stays there)."""
    if schedule == "constant":
        return None
    if schedule != "cosine":
        raise ValueError(f"unknown learning rate schedule {schedule!r} (constant or cosine)")
    total = max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))


def train_epoch(order: Tensor, batch_size: int, train_loss: Callable[[Tensor], Tensor], optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LambdaLR | None, trained: list[nn.Parameter],
                grad_clip: float | None = None) -> None:
    """One epoch of optimiser steps over the indices ``order``, ``batch_size`` at a time; the
    gradient's global norm clipped to ``grad_clip`` first when it is set (on the device)."""
    for start in range(0, len(order), batch_size):
        optimizer.zero_grad(set_to_none=True)
        train_loss(order[start:start + batch_size]).backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(trained, grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def fit_with_early_stopping(
    model: nn.Module,
    train_size: int,
    train_loss: Callable[[Tensor], Tensor],
    val_loss: Callable[[], float],
    lr: float,
    weight_decay: float,
    batch_size: int,
    max_epochs: int,
    patience: int,
    seed: int,
    min_steps_per_epoch: int = 1,
    max_steps_per_epoch: int | None = None,
    schedule: str = "constant",
    grad_clip: float | None = None,
) -> dict[str, float]:
    """AdamW over shuffled mini-batches; keep the state with the lowest validation loss.

    An epoch is at least ``min_steps_per_epoch`` optimiser steps (a small label fraction is
    cycled through several times), so that a 1 % subset of a few images is not judged after a
    handful of updates. With ``max_steps_per_epoch`` an epoch stops after that many steps and the
    next one continues the same shuffled stream, so every image is still seen, over several epochs.
    ``schedule="cosine"`` decays the learning rate to 0 over ``max_epochs`` epochs, step by step.
    ``grad_clip`` clips the gradient's global norm before each step (on the device: no host sync).
    """
    generator = torch.Generator().manual_seed(seed)
    repeats = max(1, -(-min_steps_per_epoch * batch_size // train_size))
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=weight_decay)
    best, best_state, waited, epochs = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    epoch_images = repeats * train_size if max_steps_per_epoch is None else min(max_steps_per_epoch * batch_size,
                                                                                repeats * train_size)
    scheduler = learning_rate_schedule(optimizer, schedule, -(-epoch_images // batch_size) * max_epochs)
    epoch_order = lambda: torch.cat([torch.randperm(train_size, generator=generator) for _ in range(repeats)])  # noqa: E731
    stream = torch.empty(0, dtype=torch.long)  # shuffled indices not yet used (capped epochs)
    for epoch in range(max_epochs):
        check_termination()  # a SIGTERM whose exception a finaliser swallowed
        model.train()
        if max_steps_per_epoch is None:
            order = epoch_order()
        else:  # a capped epoch is never longer than an uncapped one, and below the cap it is the same
            while len(stream) < epoch_images:
                stream = torch.cat([stream, epoch_order()])
            order, stream = stream[:epoch_images], stream[epoch_images:]
        train_epoch(order, batch_size, train_loss, optimizer, scheduler, trained, grad_clip)
        model.eval()
        with torch.no_grad():
            current = val_loss()
        epochs = epoch + 1
        if current < best - 1e-6:
            best, best_state, waited = current, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return {"best_val_loss": best, "epochs": epochs}


def fit_head(params: DenseTaskParams, model: nn.Module, train_size: int, train_loss: Callable[[Tensor], Tensor],
             val_loss: Callable[[], float], fraction: float, seed: int | None = None) -> dict[str, float]:
    """:func:`fit_with_early_stopping` with a dense task's training parameters at ``fraction`` (its
    epochs) (order drawn from ``seed``, default the task's ``train_seed``)."""
    return fit_with_early_stopping(model, train_size, train_loss, val_loss, params.lr, params.weight_decay,
                                   min(params.batch_size, train_size), params.epochs_at(fraction), params.patience,
                                   params.train_seed if seed is None else seed, params.min_steps_per_epoch,
                                   params.max_steps_per_epoch, params.schedule, params.grad_clip)


def fit_details(train_images: int, fits: list[dict[str, float]], scored: list[int]) -> dict[str, Any]:
    """A fraction's details: its training images, and each head's fit and whether it is scored (one
    head: as before, flat)."""
    if len(fits) == 1:
        return {"train_images": train_images, **fits[0]}
    return {"train_images": train_images, "heads": len(fits), "scored_heads": scored, "fits": fits}


def positives_first_fractions(has_target: np.ndarray, fractions: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """Nested fraction subsets that keep at least one image with a target in each."""
    return nested_stratified_fractions(has_target.reshape(-1, 1).astype(np.uint8), list(fractions), seed)
