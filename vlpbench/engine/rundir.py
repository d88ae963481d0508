"""The layout of one run directory and its life cycle (pending → pretrained → finished).

``results/<experiment>/runs/<run-id>/``:
``config.yaml`` (resolved config and identity), ``status.json``, ``history.json`` (per-term loss
per step), ``metrics.json`` (downstream scores and their protocols), ``provenance.json``
(versions, commit, hardware, timings), and ``checkpoints/`` (never committed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlpbench.engine.files import CorruptFile, read_json, read_yaml_mapping, write_json, write_yaml
from vlpbench.engine.provenance import versions

if TYPE_CHECKING:
    from vlpbench.config.loader import RunSpec


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
        """The run's ``status.json``; :class:`~vlpbench.engine.files.CorruptFile` when it is unreadable."""
        path = self.file("status.json")
        return read_json(path, expect=dict) if path.exists() else {"state": "pending"}

    def set_status(self, state: str, **extra: Any) -> None:
        try:
            previous = self.status()
        except CorruptFile:
            previous = {}
        write_json(self.file("status.json"), {**previous, "state": state, **extra})

    @property
    def finished(self) -> bool:
        """Finished and complete: a folder recreated without its ``config.yaml`` does not count."""
        return (self.status().get("state") == "finished" and self.file("metrics.json").is_file()
                and self.file("config.yaml").is_file())

    def check(self) -> None:
        """Read every small file of the run; :class:`CorruptFile` names the first that is unreadable."""
        for name in ("status.json", "metrics.json", "provenance.json"):
            if self.file(name).exists():
                value = read_json(self.file(name), expect=dict)
                if name == "metrics.json":
                    bad = [task for task, result in value.items()
                           if not isinstance(result, dict) or not isinstance(result.get("scores"), dict)]
                    if bad:
                        raise CorruptFile(self.file(name), f"task '{bad[0]}' has no scores mapping; it is not "
                                                           "shaped as vlpbench writes it")
        if self.file("config.yaml").exists():
            read_yaml_mapping(self.file("config.yaml"))

    def latest_epoch_checkpoint(self) -> Path | None:
        """A checkpoint to resume from (an epoch's or a step's), or None: the run has not started."""
        found = sorted(self.checkpoints.glob("epoch-*.pt")) or sorted(self.checkpoints.glob("step-*.pt"))
        return found[-1] if found else None


def experiment_dir(results_root: Path, experiment: str) -> Path:
    return results_root / experiment


def run_dir(results_root: Path, experiment: str, run_id: str) -> RunDir:
    return RunDir(experiment_dir(results_root, experiment) / "runs" / run_id)


def is_stale(run: RunDir) -> bool:
    """A finished run made under another vlpbench version, or under another version of a plugin that
    is installed now (CorruptFile when unreadable). Installing or removing other plugins does not
    make a run stale."""
    path = run.file("provenance.json")
    if not path.is_file():
        return False
    recorded, now = read_json(path, expect=dict).get("versions") or {}, versions()
    if not isinstance(recorded, dict) or recorded.get("vlpbench") != now["vlpbench"]:
        return True
    then = recorded.get("plugins") or {}
    return any(name in then and then[name] != version for name, version in now["plugins"].items())


def write_run_config(spec: RunSpec, run: RunDir) -> None:
    """The run's ``config.yaml``: its resolved config and identity (the board's and reuse's input)."""
    write_yaml(run.file("config.yaml"), {
        "experiment": spec.experiment, "variant": spec.variant, "seed": spec.seed, "run_id": spec.run_id,
        "run_hash": spec.run_hash, "overrides": spec.overrides, "data_versions": spec.protocol_versions,
        "variant_index": spec.variant_index, "baseline": spec.baseline, "world_size": spec.world_size,
        "config": spec.config, **({"evaluation": spec.evaluation} if spec.evaluation != "test" else {}),
        **({"set": spec.settings} if spec.settings else {}),  # the command line's --set overrides
    })
