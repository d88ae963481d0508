"""The runner end to end at a tiny size: results on disk, skip on rerun, resume, leaderboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from vlpbench.config.loader import load_experiment
from vlpbench.engine.callbacks import Interrupt, StopAfter
from vlpbench.engine.rundir import run_dir
from vlpbench.engine.execute import execute_run


@pytest.fixture(scope="module")
def finished_tiny(tmp_path_factory: pytest.TempPathFactory):
    """The tiny experiment run once through the CLI, shared by the tests below."""
    from tests.conftest import TINY_EXPERIMENT
    from vlpbench.cli import main

    folder = tmp_path_factory.mktemp("e2e")
    (folder / "tiny.yaml").write_text(TINY_EXPERIMENT)
    code = main(["run", str(folder / "tiny.yaml"), "--results", str(folder / "results"), "--quiet"])
    return folder, code


def test_run_writes_every_result_file(finished_tiny) -> None:
    folder, code = finished_tiny
    assert code == 0
    runs = list((folder / "results" / "tiny" / "runs").iterdir())
    assert len(runs) == 1
    run = runs[0]
    for name in ("config.yaml", "metrics.json", "history.json", "provenance.json", "status.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())["linear_probe"]
    assert set(metrics["scores"]) == {"auroc@10%", "auroc@100%"}
    assert all(0.0 <= v <= 1.0 for v in metrics["scores"].values())
    assert metrics["protocols"]["auroc@10%"]["sampling_seed"] == 42
    all_metrics = json.loads((run / "metrics.json").read_text())
    zero_shot = all_metrics["zero_shot"]["scores"]
    assert 0.0 <= zero_shot["auroc"] <= 1.0 and "auroc/cardiomegaly" in zero_shot
    retrieval = all_metrics["retrieval"]["scores"]
    for direction in ("i2t", "t2i"):
        for k in (1, 5, 10):
            # any item with the same finding set counts too, so semantic recall is never below strict
            assert 0.0 <= retrieval[f"{direction}/strict/R@{k}"] <= retrieval[f"{direction}/semantic/R@{k}"] <= 1.0
    history = json.loads((run / "history.json").read_text())
    assert len(history["steps"]) == history["total_steps"] == 2 * (96 // 16)
    assert {"total", "global", "lr"} <= set(history["steps"][0])
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["versions"]["vlpbench"] and provenance["data"]["generator_version"]
    assert provenance["source"]["version"] and {"torch", "timm", "transformers", "torchmetrics", "monai", "numpy",
                                                 "cuda"} <= set(provenance["libraries"])
    # per-case samples beside metrics.json: small, and they give back every score
    from vlpbench.board.resample import score
    from vlpbench.engine.samples import read_samples

    assert (run / "samples.npz").stat().st_size < 200_000
    samples = read_samples(run / "samples.npz")
    for task, result in all_metrics.items():
        assert result["metric_version"] and result["columns"]
        for column, value in result["scores"].items():
            kind = result["samples"][column]
            assert score(kind, samples[f"{task}/{column}"])[0] == pytest.approx(value, abs=1e-5), (task, column)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["variant"] == "base" and config["seed"] == 0


def test_leaderboard_has_a_row_per_variant(finished_tiny) -> None:
    folder, _ = finished_tiny
    board = (folder / "results" / "tiny" / "leaderboard.md").read_text()
    assert "linear_probe/auroc@10%" in board and "| base" in board and "1/1" in board
    assert "negative scope" in board and "| local " in board
    assert "bootstrap over test cases" in (folder / "results" / "tiny" / "leaderboard_full.md").read_text()
    assert "Reported numbers" not in board  # published numbers are never shown on a SynthCXR board


def test_eval_refuses_a_label_that_is_a_variant(finished_tiny, cli) -> None:
    folder, _ = finished_tiny
    run = next((folder / "results" / "tiny" / "runs").iterdir())
    code, _, err = cli("eval", str(run), "--experiment", str(folder / "tiny.yaml"), "--label", "base",
                       "--results", str(folder / "results"))
    assert code == 2 and "--separate-row" in err and "Traceback" not in err
    assert not any(p.name.startswith("base__eval__") for p in (folder / "results" / "tiny" / "runs").iterdir())


def test_rerun_skips_finished_runs(finished_tiny, cli) -> None:
    folder, _ = finished_tiny
    before = {p: p.stat().st_mtime_ns for p in (folder / "results").rglob("metrics.json")}
    code, out, _ = cli("run", str(folder / "tiny.yaml"), "--results", str(folder / "results"), "--quiet")
    assert code == 0 and "finished earlier, skipped" in out
    assert before == {p: p.stat().st_mtime_ns for p in (folder / "results").rglob("metrics.json")}


def test_resume_after_interruption_equals_uninterrupted(tmp_path: Path, tiny_experiment: Path) -> None:
    spec = load_experiment(tiny_experiment).runs[0]
    whole = run_dir(tmp_path / "a", spec.experiment, spec.run_id)
    execute_run(spec, whole, progress=False)
    cut = run_dir(tmp_path / "b", spec.experiment, spec.run_id)
    with pytest.raises(Interrupt):
        execute_run(spec, cut, progress=False, callbacks=[StopAfter(epoch=0)])
    assert not cut.finished and cut.latest_epoch_checkpoint() is not None
    partial = json.loads(cut.file("history.json").read_text())  # watchable while it trains
    assert partial["complete"] is False and partial["epochs_done"] == 1 and partial["epochs"] == 2
    assert {s["epoch"] for s in partial["steps"]} == {0} and len(partial["steps"]) == partial["total_steps"] // 2
    execute_run(spec, cut, progress=False)
    assert json.loads(cut.file("history.json").read_text())["complete"] is True
    a = torch.load(whole.final_checkpoint, weights_only=False)["model"]
    b = torch.load(cut.final_checkpoint, weights_only=False)["model"]
    for key, value in a.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            assert torch.allclose(value, b[key], atol=1e-6, rtol=0), key
    ha = json.loads(whole.file("history.json").read_text())["steps"]
    hb = json.loads(cut.file("history.json").read_text())["steps"]
    assert [round(s["total"], 6) for s in ha] == [round(s["total"], 6) for s in hb]
    assert json.loads(whole.file("metrics.json").read_text()) == json.loads(cut.file("metrics.json").read_text())
    assert json.loads(cut.file("provenance.json").read_text())["pretrain"]["resumed_from_epoch"] == 1


def test_bad_experiment_keeps_finished_results(finished_tiny, cli, tmp_path: Path) -> None:
    folder, _ = finished_tiny
    before = sorted(p.read_bytes() for p in (folder / "results").rglob("*.json"))
    bad = tmp_path / "tiny.yaml"
    bad.write_text((folder / "tiny.yaml").read_text().replace("epochs: 2", "epochs: two"))
    code, _, err = cli("run", str(bad), "--results", str(folder / "results"))
    assert code == 2 and "pretrain.epochs" in err and "Traceback" not in err
    assert before == sorted(p.read_bytes() for p in (folder / "results").rglob("*.json"))


def test_a_run_made_under_other_versions_is_stale(finished_tiny, cli, tmp_path: Path) -> None:
    import shutil

    folder, _ = finished_tiny
    results = tmp_path / "results"
    shutil.copytree(folder / "results", results)
    provenance_file = next(results.rglob("provenance.json"))
    provenance = json.loads(provenance_file.read_text())
    provenance["versions"]["vlpbench"] = "0.0.1-old"
    provenance_file.write_text(json.dumps(provenance))
    code, out, _ = cli("run", str(folder / "tiny.yaml"), "--results", str(results), "--quiet")
    assert code == 0 and "STALE" in out and "--rerun-stale" in out
    assert json.loads(provenance_file.read_text())["versions"]["vlpbench"] == "0.0.1-old"  # kept as it was
    code, out, _ = cli("run", str(folder / "tiny.yaml"), "--results", str(results), "--quiet", "--rerun-stale")
    assert code == 0 and "running" in out
    assert json.loads(provenance_file.read_text())["versions"]["vlpbench"] != "0.0.1-old"


def test_eval_of_a_run_directory_reproduces_its_metrics(finished_tiny, cli) -> None:
    folder, _ = finished_tiny
    run = next((folder / "results" / "tiny" / "runs").iterdir())
    code, out, err = cli("eval", str(run), "--experiment", str(folder / "tiny.yaml"), "--label", "reloaded",
                         "--results", str(folder / "results"))
    assert code == 0, err
    evaluated = next(p for p in (folder / "results" / "tiny" / "runs").iterdir() if p.name.startswith("reloaded__eval__"))
    original, again = (json.loads((p / "metrics.json").read_text()) for p in (run, evaluated))
    assert again == original  # same weights, same protocol, same numbers
    provenance = json.loads((evaluated / "provenance.json").read_text())
    assert provenance["evaluated"]["kind"] == "vlpbench-run" and "| reloaded" in out


def test_eval_of_a_timm_weights_file_skips_text_tasks(finished_tiny, cli, tmp_path: Path) -> None:
    import timm

    folder, _ = finished_tiny
    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict(), weights)
    results = tmp_path / "results"
    code, out, err = cli("eval", str(weights), "--arch", "resnet18", "--experiment", str(folder / "tiny.yaml"),
                         "--label", "released", "--results", str(results))
    assert code == 0, err
    assert "zero_shot: skipped" in out and "retrieval: skipped" in out
    evaluated = next((results / "tiny" / "runs").iterdir())
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert set(metrics) == {"linear_probe"}
    assert json.loads((evaluated / "provenance.json").read_text())["evaluated"]["sha256"]
    code, _, err = cli("eval", str(weights), "--experiment", str(folder / "tiny.yaml"), "--label", "x",
                       "--results", str(results))
    assert code == 2 and "--arch" in err and "Traceback" not in err


def _with_changed_task(finished_tiny, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the finished results, and the tiny experiment with one task setting changed."""
    import shutil

    folder, _ = finished_tiny
    results = tmp_path / "results"
    shutil.copytree(folder / "results", results)
    changed = tmp_path / "tiny.yaml"
    changed.write_text((folder / "tiny.yaml").read_text().replace("max_epochs: 5", "max_epochs: 4"))
    return changed, results


def test_a_task_change_reuses_the_finished_pretraining(finished_tiny, cli, tmp_path: Path) -> None:
    changed, results = _with_changed_task(finished_tiny, tmp_path)
    code, out, _ = cli("run", str(changed), "--results", str(results), "--quiet")
    assert code == 0 and "pretraining reused from base__seed0__" in out
    reused = [(p, json.loads(p.read_text()).get("pretraining_reused_from")) for p in
              (results / "tiny" / "runs").glob("*/provenance.json")]
    [(new, source)] = [(p.parent, name) for p, name in reused if name]
    old = results / "tiny" / "runs" / source
    assert old.name.startswith("base__seed0__") and old != new
    assert (new / "history.json").read_text() == (old / "history.json").read_text()
    a, b = (torch.load(p / "checkpoints" / "final.pt", weights_only=False)["model"] for p in (old, new))
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
    assert yaml.safe_load((new / "config.yaml").read_text())["config"]["tasks"][0]["max_epochs"] == 4


def test_no_reuse_pretrains_again(finished_tiny, cli, tmp_path: Path) -> None:
    changed, results = _with_changed_task(finished_tiny, tmp_path)
    code, out, _ = cli("run", str(changed), "--results", str(results), "--quiet", "--no-reuse")
    assert code == 0 and "reused" not in out
    assert not any(json.loads(p.read_text()).get("pretraining_reused_from")
                   for p in (results / "tiny" / "runs").glob("*/provenance.json"))


def test_pretrain_identity_ignores_tasks_and_downstream_split_sizes() -> None:
    from vlpbench.config.identity import pretrain_identity

    config = {"data": {"name": "synthcxr", "train_size": 64, "pretrain_size": 96}, "pretrain": {"epochs": 2},
              "tasks": [{"name": "linear_probe"}]}
    same = {**config, "data": {**config["data"], "train_size": 5000}, "tasks": []}
    identity = pretrain_identity(config, 0, {"synthcxr": "1"})
    assert pretrain_identity(same, 0, {"synthcxr": "1"}) == identity
    for other in ({**config, "data": {**config["data"], "pretrain_size": 97}}, {**config, "pretrain": {"epochs": 3}}):
        assert pretrain_identity(other, 0, {"synthcxr": "1"}) != identity
    assert pretrain_identity(config, 1, {"synthcxr": "1"}) != identity
    assert pretrain_identity(config, 0, {"synthcxr": "2"}) != identity


def test_progress_a_bar_per_task_a_line_per_run_and_the_time_left(tmp_path: Path, cli) -> None:
    """Without --quiet: each task's bar (stderr), each finished run's times and headline scores, and
    from the second run on the experiment's remaining time; --quiet silences all of it."""
    from tests.conftest import write_tiny_run

    experiment = write_tiny_run(tmp_path, "watch", seeds="[0, 1]", pretrain_size=32, epochs=1)
    code, out, err = cli("run", str(experiment), "--results", str(tmp_path / "loud"))
    assert code == 0, err
    finished = [line for line in out.splitlines() if ": finished in " in line]
    assert [line.split(":")[0] for line in finished] == ["[1/2] base seed 0", "[2/2] base seed 1"]
    for line, seed in zip(finished, (0, 1)):
        run = next((tmp_path / "loud" / "watch" / "runs").glob(f"base__seed{seed}__*"))
        score = json.loads((run / "metrics.json").read_text())["linear_probe"]["scores"]["auroc@100%"]
        assert f"linear_probe auroc@100% {100 * score:.1f}" in line and "(pretrain " in line
    assert re.search(r"\[2/2\] base seed 1: running -> .* \(about \d+s left\)", out)
    assert "eval linear_probe" in err and "fraction 100%" in err  # the task's bar and its phase
    code, out, err = cli("run", str(experiment), "--results", str(tmp_path / "quiet"), "--quiet")
    assert code == 0 and "finished in" not in out and "left)" not in out and "eval linear_probe" not in err


def test_a_task_failure_keeps_the_pretraining_for_the_next_attempt(tmp_path: Path, cli, monkeypatch) -> None:
    """A task that fails after pretraining fails the run; the next attempt evaluates the finished
    pretraining instead of pretraining again."""
    import vlpbench.engine.pretrain as pretrain_module
    from tests.conftest import write_tiny_run
    from vlpbench.tasks.linear_probe import LinearProbe

    experiment = write_tiny_run(tmp_path, "again", pretrain_size=32, epochs=1)
    results = tmp_path / "results"

    def broken(self, *args, **kwargs):
        raise RuntimeError("the probe broke")

    with monkeypatch.context() as patch:
        patch.setattr(LinearProbe, "evaluate", broken)
        code, out, _ = cli("run", str(experiment), "--results", str(results), "--quiet")
    run = next((results / "again" / "runs").iterdir())
    assert code == 2 and "FAILED" in out and "the probe broke" in json.loads((run / "status.json").read_text())["error"]
    assert (run / "checkpoints" / "final.pt").is_file()

    def no_pretraining(*args, **kwargs):
        raise AssertionError("pretrained again")

    monkeypatch.setattr(pretrain_module, "pretrain", no_pretraining)
    code, out, _ = cli("run", str(experiment), "--results", str(results), "--quiet")
    assert code == 0 and json.loads((run / "status.json").read_text())["state"] == "finished"


def test_a_task_that_cannot_be_built_stops_the_run_before_pretraining(tmp_path: Path, cli, monkeypatch) -> None:
    from tests.conftest import write_tiny_run
    from vlpbench.core.errors import ConfigError
    from vlpbench.tasks.linear_probe import LinearProbe

    experiment = write_tiny_run(tmp_path, "early", pretrain_size=32, epochs=1)

    def refuses(self, *args, **kwargs):
        raise ConfigError("linear_probe: this task refuses the data source")

    monkeypatch.setattr(LinearProbe, "__init__", refuses)
    code, out, _ = cli("run", str(experiment), "--results", str(tmp_path / "results"), "--quiet")
    run = next((tmp_path / "results" / "early" / "runs").iterdir())
    assert code == 2 and "refuses the data source" in out
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())
