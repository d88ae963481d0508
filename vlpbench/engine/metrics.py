"""The loss history without a host sync per step: values stay on the device until ``log_every``.

Each step appends its loss terms and diagnostics (0-d tensors on the model's device) to a
:class:`MetricWindow`. Every ``log_every`` steps (and at epoch ends and checkpoints) the window is
flushed: one flat tensor of every value of the window, one all-reduce across the processes (on the
device, so NCCL accepts it), one device→host copy. The history keeps one record per step, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vlpbench.core.errors import UserError
from vlpbench.engine.distributed import all_reduce_mean
from vlpbench.objective.scope import World


@dataclass
class _Pending:
    step: int
    epoch: int
    lr: float
    keys: list[str]


@dataclass
class MetricWindow:
    world: World = field(default_factory=World)
    _values: list[Tensor] = field(default_factory=list)
    _pending: list[_Pending] = field(default_factory=list)

    def add(self, step: int, epoch: int, lr: float, values: dict[str, Tensor]) -> None:
        """Queue one step's values (0-d tensors, detached here; no device read)."""
        keys = list(values)
        self._values.append(torch.stack([values[k].detach().float().reshape(()) for k in keys]))
        self._pending.append(_Pending(step, epoch, lr, keys))

    def __len__(self) -> int:
        return len(self._pending)

    def reduced(self) -> Tensor:
        """The window's values as one flat tensor, averaged over the processes (on the device)."""
        flat = torch.cat(self._values)
        if self.world.distributed:
            flat = all_reduce_mean(flat, self.world)
        return flat

    def flush(self) -> list[dict[str, Any]]:
        """The queued steps as history records (one device read), the window emptied.

        Raises :class:`~vlpbench.core.errors.UserError` when a step's total loss is not finite.
        """
        if not self._pending:
            return []
        numbers = self.reduced().tolist()
        records, offset = [], 0
        for item in self._pending:
            values = numbers[offset:offset + len(item.keys)]
            offset += len(item.keys)
            records.append({"step": item.step, "epoch": item.epoch, "lr": item.lr, **dict(zip(item.keys, values))})
        self._values.clear()
        self._pending.clear()
        for record in records:
            if not math.isfinite(record["total"]):
                raise UserError(f"pretraining diverged at step {record['step']} (loss {record['total']}); lower "
                                "pretrain.lr, set pretrain.grad_clip, or use bf16 instead of fp16.")
        return records


def step_values(total: Tensor, terms: dict[str, Tensor], stats: dict[str, Any]) -> dict[str, Tensor]:
    """One step's loggable values, keyed as in the history (``total``, terms, ``stats/…``)."""
    out = {"total": total, **terms}
    for key, value in stats.items():
        out[f"stats/{key}"] = value if isinstance(value, Tensor) else torch.tensor(float(value), device=total.device)
    return out
