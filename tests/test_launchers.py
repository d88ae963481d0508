"""`--launcher NAME` resolves a launcher component: local, slurm, or a plugin's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_tiny_run

RECORDING_LAUNCHER = """
import json, os
from vlpbench.core.hookspecs import hookimpl


class Recorder:
    def launch(self, experiment, results_root, **options):
        with open(os.environ["RECORD"], "w") as out:
            json.dump({"experiment": experiment.name, "runs": [r.run_id for r in experiment.runs],
                       "root": str(results_root), "options": options}, out)


class RunsOnly:
    def launch(self, experiment, results_root, **options):
        pass


@hookimpl
def vlpbench_register(registrar):
    registrar.add("launcher", "jobqueue.recorder", "jobqueue:Recorder", "records what it was asked to launch")
    registrar.add("launcher", "jobqueue.runs_only", "jobqueue:RunsOnly", "launches runs, not sweeps")
"""


@pytest.fixture
def queue_plugin(throwaway_plugins) -> None:
    throwaway_plugins.share(throwaway_plugins.module("jobqueue", RECORDING_LAUNCHER))


def test_a_plugin_launcher_gets_the_experiment(queue_plugin, tmp_path: Path, cli, monkeypatch) -> None:
    from vlpbench.config.loader import load_experiment

    record = tmp_path / "record.json"
    monkeypatch.setenv("RECORD", str(record))
    experiment = write_tiny_run(tmp_path, "queued", seeds="[0, 1]")
    code, out, err = cli("run", str(experiment), "--launcher", "jobqueue.recorder", "--rerun-stale",
                         "--results", str(tmp_path / "results"))
    assert code == 0, err
    asked = json.loads(record.read_text())
    assert asked["runs"] == [r.run_id for r in load_experiment(experiment).runs] and len(asked["runs"]) == 2
    assert asked["root"] == str(tmp_path / "results") and asked["options"] == {"rerun_stale": True}
    assert not (tmp_path / "results").exists()  # nothing ran here


def test_unknown_or_unable_launchers_are_refused(queue_plugin, tmp_path: Path, cli) -> None:
    experiment = write_tiny_run(tmp_path, "queued")
    code, _, err = cli("run", str(experiment), "--launcher", "slrum", "--results", str(tmp_path / "r"))
    assert code == 2 and "unknown launcher 'slrum'" in err and "did you mean 'slurm'" in err
    assert "Traceback" not in err
    sweep = write_tiny_run(tmp_path, "swept", extra="sweep:\n  space: {pretrain.lr: {choice: [0.001]}}\n"
                                                    "  metric: pretrain/loss\n  mode: min\n")
    code, _, err = cli("sweep", str(sweep), "--launcher", "jobqueue.runs_only", "--results", str(tmp_path / "r"))
    assert code == 2 and "cannot run sweeps" in err and "launch_sweep" in err and "plugin 'jobqueue'" in err


def test_the_builtin_launchers_are_components() -> None:
    from vlpbench.launchers import launcher
    from vlpbench.launchers.slurm import SlurmLauncher

    assert isinstance(launcher("slurm", sweep=True), SlurmLauncher)
