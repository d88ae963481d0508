"""Checkpoints that make a resumed run equal an uninterrupted one.

A checkpoint holds the model (every stateful component's buffers and extra state, e.g. EMAs,
centroids, term counters), the optimiser, the LR schedule, the loss history and the RNG states
(torch, numpy, python) and the position (``epoch``, ``done`` = optimiser steps done). The data
order and augmentations are re-derived from (seed, epoch), so nothing else is needed: a run resumed
from a step checkpoint in the middle of an epoch continues with the very next batch.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlpbench.engine.files import atomic_write


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda handle: torch.save(payload, handle), binary=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def prune(folder: Path, pattern: str, keep: int) -> None:
    for old in sorted(folder.glob(pattern))[:-keep]:
        old.unlink(missing_ok=True)


def checkpoint_position(path: Path, steps_per_epoch: int) -> int:
    """Steps done at a checkpoint, from its name: ``epoch-E.pt`` (end of epoch E) or ``step-S.pt``."""
    kind, number = path.stem.split("-", 1)
    return (int(number) + 1) * steps_per_epoch if kind == "epoch" else int(number)


def resume_candidates(folder: Path, steps_per_epoch: int) -> list[Path]:
    """Epoch and step checkpoints, the most advanced first (an epoch end before a step at the same point)."""
    found = [p for p in (*folder.glob("epoch-*.pt"), *folder.glob("step-*.pt")) if p.stem.split("-", 1)[1].isdigit()]
    return sorted(found, key=lambda p: (checkpoint_position(p, steps_per_epoch), p.stem.startswith("epoch")),
                  reverse=True)
