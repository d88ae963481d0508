"""The layout of one run directory and its life cycle (pending → pretrained → finished).

``results/<experiment>/runs/<run-id>/``:
``config.yaml`` (resolved config and identity), ``status.json``, ``history.json`` (per-term loss
per step), ``metrics.json`` (downstream scores and their protocols), ``provenance.json``
(versions, commit, hardware, timings), and ``checkpoints/`` (never committed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlpbench.engine.files import read_json, write_json


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final_checkpoint(self) -> Path:
        return self.checkpoints / "final.pt"

    def file(self, name: str) -> Path:
        return self.path / name

    def status(self) -> dict[str, Any]:
        path = self.file("status.json")
        return read_json(path) if path.is_file() else {"state": "pending"}

    def set_status(self, state: str, **extra: Any) -> None:
        write_json(self.file("status.json"), {**self.status(), "state": state, **extra})

    @property
    def finished(self) -> bool:
        return self.status().get("state") == "finished" and self.file("metrics.json").is_file()

    def latest_epoch_checkpoint(self) -> Path | None:
        """A checkpoint to resume from (an epoch's or a step's), or None: the run has not started."""
        found = sorted(self.checkpoints.glob("epoch-*.pt")) or sorted(self.checkpoints.glob("step-*.pt"))
        return found[-1] if found else None


def experiment_dir(results_root: Path, experiment: str) -> Path:
    return results_root / experiment


def run_dir(results_root: Path, experiment: str, run_id: str) -> RunDir:
    return RunDir(experiment_dir(results_root, experiment) / "runs" / run_id)
