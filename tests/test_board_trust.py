"""What makes the board trustworthy: one configuration per row, declared task metadata, published
numbers only where their protocol matches, true provenance, degenerate runs refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from tests.test_leaderboard import BASE_CONFIG, write_run
from vlpbench.board.leaderboard import build_board, write_leaderboard

REPO = Path(__file__).resolve().parents[1]


def test_an_edited_configuration_never_pools_with_the_old_runs(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    write_run(root, "base", 0, 0.70, config={**BASE_CONFIG, "pretrain": {"batch_size": 64, "epochs": 2}})
    write_run(root, "base", 1, 0.64, config={**BASE_CONFIG, "pretrain": {"batch_size": 64, "epochs": 2}})
    old = root / "runs"
    for folder in old.iterdir():
        status = json.loads((folder / "status.json").read_text())
        (folder / "status.json").write_text(json.dumps({**status, "started": 1.0}))
    # the same variant rerun after `epochs: 2` became `epochs: 3` (a new run directory, later)
    folder = root / "runs" / "base__seed0__new"
    write_run(root, "base__new", 0, 0.50, config={**BASE_CONFIG, "pretrain": {"batch_size": 64, "epochs": 3}})
    (root / "runs" / "base__new__seed0").rename(folder)
    record = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump({**record, "variant": "base", "run_id": folder.name}))
    (folder / "status.json").write_text(json.dumps({"state": "finished", "started": 2.0}))
    board = build_board([root], "t")
    row = board.summary.loc[("base", "linear_probe/auroc@1%")]
    assert row["n"] == 1 and row["mean"] == pytest.approx(0.50)  # never (0.70 + 0.64 + 0.50) / 3
    assert board.finished == {"base": 1} and board.planned == {"base": 1}
    assert sorted(board.superseded["seed"]) == [0, 1]
    assert all("pretrain.epochs: 2 → 3" in d for d in board.superseded["differs from current"])
    markdown = write_leaderboard(root)
    assert "Superseded runs" in markdown and "| 1/1 " in markdown


def test_the_experiment_files_configuration_is_current_and_the_rerun_warns(tmp_path: Path) -> None:
    from tests.conftest import write_tiny_run
    from vlpbench.board.current import superseded_warnings
    from vlpbench.config.loader import load_experiment

    old = load_experiment(write_tiny_run(tmp_path, "edit", epochs=2)).runs[0]
    new = load_experiment(write_tiny_run(tmp_path, "edit", epochs=3)).runs[0]
    assert old.config_hash != new.config_hash and old.run_id != new.run_id
    assert new.config_hash == load_experiment(tmp_path / "edit.yaml", seeds=[5]).runs[0].config_hash  # no seed in it
    root = tmp_path / "results" / "edit"
    folder = root / "runs" / old.run_id
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "experiment": "edit", "variant": "base", "seed": 0, "run_id": old.run_id, "run_hash": old.run_hash,
        "overrides": {}, "data_versions": old.protocol_versions, "config": old.config, "world_size": 1}))
    (folder / "status.json").write_text(json.dumps({"state": "finished", "started": 9e9}))  # even if newer
    (folder / "metrics.json").write_text(json.dumps({"linear_probe": {"scores": {"auroc@100%": 0.7},
                                                                      "protocols": {"auroc@100%": {"hash": "x"}}}}))
    experiment = load_experiment(tmp_path / "edit.yaml")
    warnings = superseded_warnings(experiment, root)
    assert len(warnings) == 1 and "pretrain.epochs: 2 → 3" in warnings[0]
    board = build_board([root], "t", planned=[(r.variant, r.seed, r.config_hash) for r in experiment.runs])
    assert board.summary.empty and board.finished == {} and board.planned == {"base": 1}
    assert list(board.superseded["run_id"]) == [old.run_id]


def test_eval_label_that_names_a_variant_is_refused_unless_a_separate_row(tmp_path: Path) -> None:
    from tests.conftest import write_tiny_run
    from vlpbench.engine.evaluate import eval_label
    from vlpbench.core.errors import ConfigError

    experiment = write_tiny_run(tmp_path, "labels")
    with pytest.raises(ConfigError, match="--separate-row"):
        eval_label("base", experiment, separate_row=False)
    assert eval_label("base", experiment, separate_row=True) == "base [eval]"
    assert eval_label("released", experiment, separate_row=False) == "released"


class ThrowAwayTask:
    """A third-party task: one lower-is-better headline column with a chance level, one detail column."""

    metric_version = "7"

    def result(self, error: float) -> object:
        from vlpbench.tasks.base import Column, Samples, TaskResult

        protocol = {"task": "acme.calibration", "hash": "cccc3333"}
        return TaskResult({"ece": error, "bins": 10.0}, {"ece": protocol, "bins": protocol}, {},
                          {"ece": Column(headline=True, higher_is_better=False, chance=0.25), "bins": Column()},
                          {"ece": Samples("mean", {"values": np.full(20, error)})})


def test_a_third_party_tasks_metadata_drives_the_board(tmp_path: Path) -> None:
    from vlpbench.engine.scoring import record_metrics, task_metrics
    from vlpbench.engine.rundir import RunDir

    root = tmp_path / "exp"
    for index, (variant, error) in enumerate((("a", 0.10), ("b", 0.05))):
        write_run(root, variant, 0, 0.6, index=index)
        run = RunDir(root / "runs" / f"{variant}__seed0")
        task = ThrowAwayTask()
        outcome = task.result(error)
        record_metrics(run, {"acme.calibration": task_metrics(task, outcome)}, {"acme.calibration": outcome.samples})
    board = build_board([root], "t")
    assert board.headline_columns() == ["acme.calibration/ece"]
    assert ("b", "acme.calibration/ece") in board.best  # lower is better: the smaller error wins
    assert ("a", "acme.calibration/ece") not in board.best
    assert board.column_info["acme.calibration/ece"]["chance"] == 0.25
    assert board.column_info["acme.calibration/ece"]["metric_version"] == "7"
    assert list(board.ranks.index) == ["b", "a"] and board.ranks.loc["b", "mean rank"] == 1.0
    assert board.summary.loc[("a", "acme.calibration/ece"), "ci_method"] == "bootstrap over test cases"
    markdown = write_leaderboard(root)
    assert "lower is better in `acme.calibration/ece`" in markdown and "**5.0**" in markdown


def test_published_numbers_only_on_boards_of_their_task_and_dataset() -> None:
    from vlpbench.board.reported import matching_reported, reported_entries

    entries = reported_entries()
    assert any(e["method"].startswith("FaNe") and e["citation"] for e in entries)  # from the FaNe plugin
    synth = {"h1": {"task": "linear_probe", "dataset": {"dataset": "synthcxr"}}}
    chexpert = {"h2": {"task": "linear_probe", "dataset": {"dataset": "chexpert"}}}
    assert matching_reported(synth, [], entries) == []
    shown = matching_reported(chexpert, [], entries)
    assert shown and {e["dataset"] for e in shown} == {"chexpert"} and {e["task"] for e in shown} == {"linear_probe"}


def test_provenance_names_vlpbenchs_commit_inside_a_foreign_repository(tmp_path: Path) -> None:
    foreign = tmp_path / "my_project"
    foreign.mkdir()
    for command in (["init", "-q"], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-C", str(foreign), *command], check=True)
    theirs = subprocess.run(["git", "-C", str(foreign), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    ours = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    script = "import json; from vlpbench.engine.provenance import source; print(json.dumps(source()))"
    out = subprocess.run([sys.executable, "-c", script], cwd=foreign, capture_output=True, text=True, check=True)
    found = json.loads(out.stdout)
    assert found["commit"] == ours != theirs and isinstance(found["dirty"], bool)
    # a copy of the package inside the foreign repository (as in a virtual environment there): no commit, not theirs
    import shutil

    shutil.copytree(REPO / "vlpbench", foreign / "venv" / "vlpbench", ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c", script], cwd=foreign, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(foreign / "venv")})
    assert json.loads(out.stdout)["commit"] is None


def test_zero_step_pretraining_is_refused_before_it_starts() -> None:
    from vlpbench.engine.execute import refuse_zero_steps
    from vlpbench.core.errors import ConfigError

    config = SimpleNamespace(pretrain=SimpleNamespace(batch_size=128, epochs=3))
    built = SimpleNamespace(pretrain=type("Data", (), {"steps_per_epoch": staticmethod(lambda b: 96 // b),
                                                       "__len__": lambda self: 96})())
    with pytest.raises(ConfigError, match="0 steps.*batch_size = 128.*96 pretraining samples"):
        refuse_zero_steps(config, built)
    refuse_zero_steps(SimpleNamespace(pretrain=SimpleNamespace(batch_size=32, epochs=1)), built)  # 3 steps: fine


def test_a_non_finite_score_fails_the_task_and_keeps_the_others(tmp_path: Path) -> None:
    from vlpbench.engine.scoring import TaskFailed, record_metrics, task_metrics
    from vlpbench.engine.rundir import RunDir
    from vlpbench.tasks.base import TaskResult

    good = TaskResult({"auroc": 0.7}, {"auroc": {"hash": "a"}})
    bad = TaskResult({"auroc": float("nan"), "other": float("inf")}, {"auroc": {"hash": "b"}, "other": {"hash": "b"}})
    metrics = {"good": task_metrics(object(), good), "bad": task_metrics(object(), bad)}
    run = RunDir(tmp_path / "run")
    with pytest.raises(TaskFailed, match="task 'bad': non-finite score.*auroc = nan.*other = inf"):
        record_metrics(run, metrics, {})
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["good"]["scores"] == {"auroc": 0.7} and written["bad"]["scores"] == {}
    assert "NaN" not in (tmp_path / "run" / "metrics.json").read_text()
