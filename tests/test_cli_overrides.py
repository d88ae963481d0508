"""`--set KEY=VALUE`, `--device` and `run --dry-run` (issue 21)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import write_tiny_run


def _run_config(results: Path, name: str) -> dict:
    (folder,) = [p for p in (results / name / "runs").iterdir() if not p.name.startswith(".")]
    return yaml.safe_load((folder / "config.yaml").read_text())


def test_set_overrides_every_variant_and_is_recorded(tmp_path: Path, cli) -> None:
    from vlpbench.config.loader import load_experiment

    path = write_tiny_run(tmp_path, "sets", extra="variants:\n  a: {}\n  b: {pretrain.lr: 5.0e-3}\n")
    plain = load_experiment(path)
    changed = load_experiment(path, settings={"pretrain.lr": 2e-3, "objective.global.temperature": 0.2})
    for before, after in zip(plain.runs, changed.runs):
        assert after.config["pretrain"]["lr"] == 2e-3  # after the variant's own override (b sets 5e-3)
        assert after.config["objective"]["global"]["temperature"] == 0.2
        assert after.run_hash != before.run_hash  # a new configuration is a new run
        assert after.settings == {"pretrain.lr": 2e-3, "objective.global.temperature": 0.2}
    # the same value as the file's changes nothing
    same = load_experiment(path, settings={"pretrain.epochs": 2})
    assert [r.run_hash for r in same.runs] == [r.run_hash for r in plain.runs]


def test_set_errors_name_the_command_line(tmp_path: Path, cli) -> None:
    path = write_tiny_run(tmp_path, "bad")
    code, out, err = cli("validate", str(path), "--set", "pretrain.epoch=3")
    assert code == 2 and "--set pretrain.epoch" in err and "epochs" in err and "Traceback" not in err
    code, out, err = cli("validate", str(path), "--set", "pretrain.lr=fast")
    assert code == 2 and "--set pretrain.lr" in err
    code, out, err = cli("validate", str(path), "--set", "lr=1e-4")
    assert code == 2 and "does not start with one of" in err and "pretrain.lr" in err
    code, out, err = cli("validate", str(path), "--set", "pretrain.lr")
    assert code == 2 and "KEY=VALUE" in err
    code, out, err = cli("validate", str(path), "--set", "objective.positive_miner={name: nosuchminer}")
    assert code == 2 and "--set objective.positive_miner" in err and "nosuchminer" in err
    code, out, err = cli("validate", str(path), "--set", "pretrain.device=cpu", "--device", "cuda")
    assert code == 2 and "disagree" in err
    code, out, err = cli("validate", str(path), "--set", "pretrain.lr=1e-4", "--set", "objective.positive_miner={name: oracle}")
    assert code == 0, err
    assert "pretrain.lr=0.0001" in out and "OK" in out


def test_run_with_set_and_device_records_them_and_dry_run_plans(tmp_path: Path, cli) -> None:
    path = write_tiny_run(tmp_path, "planned", pretrain_size=48)
    results = tmp_path / "results"

    code, out, err = cli("run", str(path), "--results", str(results), "--set", "pretrain.lr=2e-3", "--dry-run")
    assert code == 0, err
    assert "new" in out and "runs: 1 new" in out and "unknown" in out
    assert not (results / "planned").exists()  # a dry run writes nothing

    code, out, err = cli("run", str(path), "--results", str(results), "--quiet", "--set", "pretrain.lr=2e-3",
                         "--device", "cpu")
    assert code == 0, err
    recorded = _run_config(results, "planned")
    assert recorded["set"] == {"pretrain.lr": 2e-3, "pretrain.device": "cpu"}
    assert recorded["config"]["pretrain"]["lr"] == 2e-3 and recorded["config"]["pretrain"]["device"] == "cpu"

    code, out, err = cli("run", str(path), "--results", str(results), "--set", "pretrain.lr=2e-3", "--device", "cpu",
                         "--dry-run")
    assert code == 0 and "runs: 1 finished" in out and "nothing to run" in out
    # other tasks only: the finished run's pretraining is reused, and the estimate comes from its timings
    code, out, err = cli("run", str(path), "--results", str(results), "--set", "pretrain.lr=2e-3", "--device", "cpu",
                         "--set", "tasks.0.fractions=[0.5]", "--dry-run")
    assert code == 0 and "runs: 1 reuse" in out and "pretraining reused from" in out and "estimated time: ~" in out
    # another learning rate: a new run
    code, out, err = cli("run", str(path), "--results", str(results), "--dry-run", "--seeds", "0,1")
    assert code == 0 and "runs: 2 new" in out and "estimated time: ~" in out


def test_dry_run_reports_resume_stale_and_corrupt(tmp_path: Path, cli, monkeypatch) -> None:
    import json

    from vlpbench.config.loader import load_experiment
    from vlpbench.engine.plan import plan_experiment
    from vlpbench.engine.rundir import run_dir

    path = write_tiny_run(tmp_path, "states", seeds="[0, 1, 2, 3]")
    experiment = load_experiment(path)
    results = tmp_path / "results"
    runs = [run_dir(results, "states", spec.run_id) for spec in experiment.runs]
    runs[0].checkpoints.mkdir(parents=True)
    (runs[0].checkpoints / "epoch-0001.pt").write_bytes(b"")
    runs[1].path.mkdir(parents=True)
    (runs[1].path / "status.json").write_text("{not json")
    for run in runs[2:]:
        run.path.mkdir(parents=True)
        run.set_status("finished")
        (run.path / "metrics.json").write_text("{}")
        (run.path / "config.yaml").write_text(yaml.safe_dump({"variant": "base", "seed": 2, "config": {}}))
        (run.path / "provenance.json").write_text(json.dumps({"versions": {"vlpbench": "0.0-old"},
                                                              "timings": {"pretrain_seconds": 120, "eval_seconds": 30}}))
    states = [p.state for p in plan_experiment(experiment, results)]
    assert states == ["resume", "corrupt", "stale", "stale"]
    rerun = plan_experiment(experiment, results, rerun_stale=True)
    assert [p.state for p in rerun] == ["resume", "corrupt", "rerun", "rerun"]
    assert rerun[2].seconds == 150.0 and rerun[0].seconds == 150.0


def test_sweep_trials_take_the_settings_and_the_space_wins(tmp_path: Path) -> None:
    from vlpbench.launchers.sweep_plan import load_sweep

    path = write_tiny_run(tmp_path, "swept", extra=(
        "sweep:\n  space: {pretrain.lr: {loguniform: [1.0e-4, 1.0e-2]}}\n  metric: pretrain/loss\n  mode: min\n"
        "  num_samples: 2\n"))
    plan = load_sweep(path, settings={"pretrain.epochs": 1, "pretrain.lr": 7e-3})
    spec = plan.trial_spec({"pretrain.lr": 3e-3}, "t1")
    assert spec.config["pretrain"]["epochs"] == 1 and spec.config["pretrain"]["lr"] == 3e-3
    assert spec.settings == {"pretrain.epochs": 1, "pretrain.lr": 7e-3}
    plain = load_sweep(path).trial_spec({"pretrain.lr": 3e-3}, "t1")
    assert plain.config["pretrain"]["epochs"] == 2 and plain.run_hash != spec.run_hash
