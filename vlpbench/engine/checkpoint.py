"""Checkpoints that make a resumed run equal an uninterrupted one — and that never run code.

A checkpoint holds the model (every stateful component's buffers and extra state, e.g. EMAs,
centroids, term counters), the optimiser, the LR schedule, the loss history and the RNG states
(torch, numpy, python) and the position (``epoch``, ``done`` = optimiser steps done). The data
order and augmentations are re-derived from (seed, epoch), so nothing else is needed: a run resumed
from a step checkpoint in the middle of an epoch continues with the very next batch.

Results folders are shared and merged between machines, so a checkpoint is untrusted input: it is
read with ``torch.load(weights_only=True)``, which unpickles only tensors and plain containers and
refuses anything that could run code. Everything saved is therefore plain: the numpy and python RNG
states, which are a tuple with an ``ndarray`` and a tuple of ints, are stored as a tensor and lists
(:func:`rng_state`) and turned back on resume (:func:`set_rng_state`). A file that cannot be read
(truncated, corrupt, foreign, or refused because it holds other objects) raises
:class:`CheckpointError`, one paragraph naming the file and the reason. Resume uses
:func:`load_latest_good`, which falls back to the previous epoch checkpoint when the newest is bad.
"""

from __future__ import annotations

import io
import random
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vlpbench.engine.files import atomic_write
from vlpbench.core.errors import DataError

if TYPE_CHECKING:
    from vlpbench.engine.rundir import RunDir


class CheckpointError(DataError):
    """A checkpoint file that cannot be loaded safely (corrupt, truncated, or not plain data)."""


def rng_state() -> dict[str, Any]:
    """Every RNG state as tensors, lists and numbers only (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": [int(x) for x in internal], "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                             numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    else:  # in-memory state from an older rng_state() (never read from a file)
        np.random.set_state(numpy_state)
    python_state = state["python"]
    if isinstance(python_state, dict):
        random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"]))
    else:
        random.setstate(python_state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise in memory first, then write atomically: a full disk surfaces as the OS error of the
    write (``ENOSPC``), not as torch's zip writer's "unexpected pos"."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getbuffer()
    atomic_write(path, lambda handle: handle.write(data), binary=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, unpickling plain data only; :class:`CheckpointError` otherwise."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint '{path}' does not exist.") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint '{path}' is a folder, not a file; remove or rename it.") from None
    except PermissionError as exc:
        raise CheckpointError(f"checkpoint '{path}' cannot be read: {exc.strerror}. Check its permissions.") from None
    except Exception as exc:  # UnpicklingError (refused global), RuntimeError (truncated zip), EOFError, ...
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded safely: {_reason(exc)}. It is truncated, "
                              "corrupt, or was not written by this version of vlpbench (checkpoints are read "
                              "with torch.load(weights_only=True), which refuses anything but tensors and plain "
                              "data, so a file from elsewhere cannot run code). Delete it to recompute it.") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(state).__name__}, not a vlpbench checkpoint "
                              "(a mapping). Delete it to recompute it.")
    return state


def _reason(exc: BaseException) -> str:
    """The first line of a loading error, without torch's long weights_only advice."""
    text = str(exc).strip()
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text) or re.search(r"Unsupported operand \d+", text)
        return (f"it holds objects other than tensors and plain data ({found.group(0) if found else 'refused by torch'}) "
                "and was not unpickled")
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def load_latest_good(run: "RunDir", steps_per_epoch: int = 1) -> tuple[Path, dict[str, Any]] | None:
    """The most advanced checkpoint of ``run`` (epoch or step) that loads, and its state; ``None``
    when there is none.

    A bad newest checkpoint (a kill during a copy, a truncated file on a full disk, a foreign or
    poisoned file) is named in a warning and the previous one is tried (two of each kind are
    kept); when none loads, training starts from scratch, which gives the same result on one device.
    """
    candidates = resume_candidates(run.checkpoints, steps_per_epoch) if run.checkpoints.is_dir() else []
    for path in candidates:
        try:
            state = load_checkpoint(path)
            if not {"epoch", "model", "optimizer", "schedule", "rng", "history"} <= set(state):
                raise CheckpointError(f"checkpoint '{path}' lacks the keys of a training checkpoint; delete it.")
        except CheckpointError as exc:
            warnings.warn(f"{exc} Resuming from the previous checkpoint instead.", stacklevel=2)
            continue
        return path, state
    return None


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
