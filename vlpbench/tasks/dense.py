"""What the dense tasks (segmentation, detection) share: frozen feature maps, fraction subsets,
and the train-with-early-stopping loop over precomputed features.

Frozen feature maps are computed once per checkpoint and split and reused across label fractions;
only the decoder or head trains. Model selection uses the validation split only; the test split is
scored once, with the selected state.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from vlpbench.data.pipeline import to_model_images
from vlpbench.tasks.base import TaskParams


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
    max_epochs: int = Field(12, ge=1)
    patience: int = Field(3, ge=1)
    min_steps_per_epoch: int = Field(10, ge=1, description="small fractions are cycled to at least this many steps per epoch")
    max_steps_per_epoch: int | None = Field(
        None, ge=1, description="cap on the steps of an epoch: a large training set is then seen over several "
                                "epochs, so that a larger fraction costs no more than this (None: one full pass)")


@dataclass
class FrozenMaps:
    """Feature maps of one split, fine to coarse: a list of [n, C_i, h_i, w_i] tensors on the CPU."""

    maps: list[Tensor]

    def __len__(self) -> int:
        return self.maps[0].shape[0]

    def batch(self, index: Tensor, device: torch.device) -> list[Tensor]:
        return [m[index].to(device) for m in self.maps]

    @property
    def channels(self) -> list[int]:
        return [m.shape[1] for m in self.maps]

    @property
    def strides_shapes(self) -> list[tuple[int, int]]:
        return [tuple(m.shape[-2:]) for m in self.maps]


@torch.no_grad()
def frozen_feature_maps(encoder: nn.Module, images: np.ndarray, device: torch.device, min_stride: int = 4,
                        batch_size: int = 128) -> FrozenMaps:
    """Pre-projection feature maps of ``images`` [n,H,W] in [0,1], in eval mode."""
    was_training = encoder.training
    encoder.eval()
    tensors = to_model_images(images)
    chunks: list[list[Tensor]] = []
    for start in range(0, len(tensors), batch_size):
        maps = encoder.feature_maps(tensors[start:start + batch_size].to(device), min_stride=min_stride)
        chunks.append([m.float().cpu() for m in maps])
    encoder.train(was_training)
    return FrozenMaps([torch.cat([c[i] for c in chunks]) for i in range(len(chunks[0]))])


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
) -> dict[str, float]:
    """AdamW over shuffled mini-batches; keep the state with the lowest validation loss.

    An epoch is at least ``min_steps_per_epoch`` optimiser steps (a small label fraction is
    cycled through several times), so that a 1 % subset of a few images is not judged after a
    handful of updates. With ``max_steps_per_epoch`` an epoch stops after that many steps and the
    next one continues the same shuffled stream, so every image is still seen, over several epochs.
    """
    generator = torch.Generator().manual_seed(seed)
    repeats = max(1, -(-min_steps_per_epoch * batch_size // train_size))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    best, best_state, waited, epochs = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    epoch_order = lambda: torch.cat([torch.randperm(train_size, generator=generator) for _ in range(repeats)])  # noqa: E731
    stream = torch.empty(0, dtype=torch.long)  # shuffled indices not yet used (capped epochs)
    for epoch in range(max_epochs):
        model.train()
        if max_steps_per_epoch is None:
            order = epoch_order()
        else:  # a capped epoch is never longer than an uncapped one, and below the cap it is the same
            take = min(max_steps_per_epoch * batch_size, repeats * train_size)
            while len(stream) < take:
                stream = torch.cat([stream, epoch_order()])
            order, stream = stream[:take], stream[take:]
        for start in range(0, len(order), batch_size):
            optimizer.zero_grad(set_to_none=True)
            train_loss(order[start:start + batch_size]).backward()
            optimizer.step()
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
             val_loss: Callable[[], float]) -> dict[str, float]:
    """:func:`fit_with_early_stopping` with a dense task's training parameters."""
    return fit_with_early_stopping(model, train_size, train_loss, val_loss, params.lr, params.weight_decay,
                                   min(params.batch_size, train_size), params.max_epochs, params.patience,
                                   params.train_seed, params.min_steps_per_epoch, params.max_steps_per_epoch)


def positives_first_fractions(has_target: np.ndarray, fractions: Sequence[float], seed: int) -> dict[float, np.ndarray]:
    """Nested fraction subsets that keep at least one image with a target in each."""
    from vlpbench.tasks.base import nested_stratified_fractions

    return nested_stratified_fractions(has_target.reshape(-1, 1).astype(np.uint8), list(fractions), seed)
