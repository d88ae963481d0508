"""The learning-rate schedule of pretraining: one AdamW warm-up + cosine over the run, or the stages
of ``pretrain.stages`` (each with its own optimiser, warm-up and cosine to a minimum rate).

A stage is resolved against the run's length as a :class:`StagePlan`; the training loop
(:mod:`vlpbench.engine.pretrain`) builds each stage's optimiser and schedule when the stage starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from vlpbench.config.schema import PretrainConfig
from vlpbench.core.errors import ConfigError


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Linear ramp ``(step + 1) / warmup_steps``, then cosine from 1 to 0 over the remaining steps."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


@dataclass(frozen=True)
class StagePlan:
    """A stage resolved against the run: its first step, optimiser and learning-rate schedule."""

    name: str
    first_step: int
    steps: int
    optimizer: str
    lr: float
    weight_decay: float
    warmup: float
    warmup_start_lr: float | None  # None: the single-schedule ramp ((step + 1) / warm-up steps)
    min_lr: float

    def build(self, params: list[torch.nn.Parameter]) -> tuple[torch.optim.Optimizer, Any]:
        """A fresh optimiser (new moments) and its schedule over this stage's steps."""
        kind = torch.optim.Adam if self.optimizer == "adam" else torch.optim.AdamW
        optimizer = kind(params, lr=self.lr, weight_decay=self.weight_decay)
        warmup = int(self.warmup * self.steps)
        if self.warmup_start_lr is None:
            factor = warmup_cosine(warmup, self.steps)
        else:
            factor = stage_factor(warmup, self.steps, self.warmup_start_lr / self.lr, self.min_lr / self.lr)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def stage_factor(warmup_steps: int, total_steps: int, start: float, end: float) -> Callable[[int], float]:
    """Linear warm-up from ``start`` to 1 over ``warmup_steps``, then cosine from 1 to ``end`` (as
    pl_bolts' LinearWarmupCosineAnnealingLR, which CM-CGNS uses), as a multiple of the peak rate."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return start + (1.0 - start) * step / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def stage_plans(config: PretrainConfig, steps_per_epoch: int) -> list[StagePlan]:
    """The run's stages: one AdamW warm-up + cosine over the run, or ``pretrain.stages`` (each from
    its ``start``, a fraction of the run's steps as the components' ``start``, to the next stage's)."""
    total = steps_per_epoch * config.epochs
    if not config.stages:
        return [StagePlan("main", 0, total, "adamw", config.lr, config.weight_decay, config.warmup, None, 0.0)]
    firsts = [round(stage.start * total) for stage in config.stages]
    if any(b <= a for a, b in zip(firsts, firsts[1:])) or firsts[-1] >= max(1, total):
        raise ConfigError(f"pretrain.stages start at steps {firsts} of {total}: every stage needs at least one step "
                          "of its own; use more epochs or data, or fewer stages.")
    ends = firsts[1:] + [total]
    return [StagePlan(stage.name, first, end - first, stage.optimizer, stage.lr or config.lr,
                      config.weight_decay if stage.weight_decay is None else stage.weight_decay, stage.warmup,
                      stage.warmup_start_lr, stage.min_lr)
            for stage, first, end in zip(config.stages, firsts, ends)]


def stage_of(plans: list[StagePlan], step: int) -> int:
    """Index of the stage that runs ``step``."""
    return max(i for i, plan in enumerate(plans) if plan.first_step <= step) if plans else 0
