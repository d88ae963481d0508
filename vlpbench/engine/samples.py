"""``samples.npz``: a run's per-test-case outputs, beside its ``metrics.json``.

One compressed NumPy archive per run; array ``<task>/<column>/<name>`` (e.g.
``linear_probe/auroc@1%/scores``), and ``metrics.json`` names each column's samples kind. The
leaderboard recomputes scores from them on resampled test cases (:mod:`vlpbench.board.resample`).

Size: the arrays hold a few numbers per test case (probabilities and labels per finding, a hit per
query, Dice and pixel counts per image, ≤ max_detections rows per image), never images or masks:
tens of kB at SynthCXR size, a few MB for the real test sets. Above :data:`MAX_BYTES` (uncompressed)
a column's samples are left out and ``metrics.json`` says so; its CI then falls back to seeds only.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from vlpbench.engine.files import atomic_write

MAX_BYTES = 64 * 2**20
FILE = "samples.npz"


def flatten_samples(samples: dict[str, dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``{task: {column: Samples}}`` → (archive arrays, ``{task/column: why left out}``)."""
    arrays: dict[str, np.ndarray] = {}
    dropped: dict[str, str] = {}
    total = 0
    for task, columns in samples.items():
        for column, sample in columns.items():
            size = sum(np.asarray(a).nbytes for a in sample.arrays.values())
            if total + size > MAX_BYTES:
                dropped[f"{task}/{column}"] = f"{size / 2**20:.1f} MB of samples exceed the run's {MAX_BYTES >> 20} MB bound"
                continue
            total += size
            for name, array in sample.arrays.items():
                arrays[f"{task}/{column}/{name}"] = np.asarray(array)
    return arrays, dropped


def write_samples(path: Path, samples: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Write the archive (atomically); return the columns left out and why."""
    arrays, dropped = flatten_samples(samples)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()), binary=True)
    return dropped


def read_samples(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{task/column: {name: array}}`` of a run's archive (empty when there is none)."""
    if not path.is_file():
        return {}
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            column, _, name = key.rpartition("/")
            out.setdefault(column, {})[name] = archive[key]
    return out
