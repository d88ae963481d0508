"""Reuse a finished pretraining when only the downstream tasks changed.

A run's identity covers its whole config, tasks included, so adding a task or changing a task's
protocol makes a new run. Its pretraining, though, depends only on the rest of the config, the seed
and the pretraining data's version: the *pretraining identity*. When a finished, non-stale run of
the same experiment has the same pretraining identity, its final checkpoint and loss history are
copied into the new run and only the tasks are evaluated. Pretraining is deterministic on one
device (a resumed or repeated run reproduces the same weights), so the result is the one a full
rerun would give; the run's provenance names the run the pretraining came from.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from vlpbench.config.identity import pretrain_identity
from vlpbench.engine.files import CorruptFile, read_json, read_yaml_mapping
from vlpbench.engine.rundir import RunDir, is_stale


def _identity_of(run: RunDir) -> str | None:
    path = run.file("config.yaml")
    if not path.is_file():
        return None
    recorded = read_yaml_mapping(path)
    if not {"config", "seed"} <= set(recorded) or not isinstance(recorded["config"], dict):
        return None
    return pretrain_identity(recorded["config"], recorded["seed"], recorded.get("data_versions") or {},
                             int(recorded.get("world_size") or 1))


def find_reusable_pretraining(run: RunDir, identity: str) -> RunDir | None:
    """A finished, non-stale sibling run with the same pretraining identity and its final checkpoint."""
    for candidate in sorted(run.path.parent.iterdir()) if run.path.parent.is_dir() else []:
        other = RunDir(candidate)
        if other.path == run.path or candidate.name.startswith(".") or not candidate.is_dir():
            continue
        try:  # a sibling with unreadable files is not a source (it shows as corrupt on the board)
            if not other.finished or not other.final_checkpoint.is_file():
                continue
            if not other.file("history.json").is_file() or is_stale(other):
                continue
            if _identity_of(other) == identity:
                return other
        except (CorruptFile, TypeError, ValueError):
            continue
    return None


def copy_pretraining(source: RunDir, target: RunDir) -> None:
    """Hard-link (or copy) the final checkpoint and copy the loss history into ``target``."""
    target.checkpoints.mkdir(parents=True, exist_ok=True)
    destination = target.final_checkpoint
    destination.unlink(missing_ok=True)
    try:
        os.link(source.final_checkpoint, destination)
    except OSError:
        shutil.copy2(source.final_checkpoint, destination)
    shutil.copy2(source.file("history.json"), target.file("history.json"))


def reused_timings(source: RunDir) -> dict[str, Any]:
    """The pretraining figures of the run whose pretraining is reused (from its provenance)."""
    provenance: dict[str, Any] = read_json(source.file("provenance.json"))
    return {"run": source.path.name, "timings": provenance.get("timings", {}),
            "pretrain": provenance.get("pretrain", {})}
