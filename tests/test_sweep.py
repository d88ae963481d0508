"""``vlpbench sweep``: the sweep: section, validation-split scoring, and Ray Tune end to end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import write_tiny_run
from vlpbench.config.loader import load_experiment
from vlpbench.core.errors import ConfigError
from vlpbench.launchers.sweep_plan import load_sweep

REPO = Path(__file__).resolve().parents[1]

SWEEP = """\
sweep:
  space:
    pretrain.lr: {loguniform: [1.0e-4, 1.0e-1]}
    objective.global.temperature: {choice: [0.05, 0.2]}
    pretrain.batch_size: {randint: [8, 17]}
    pretrain.warmup: {uniform: [0.0, 0.3]}
  metric: linear_probe/auroc@100%
  mode: max
  num_samples: 3
"""


def write(tmp_path: Path, text: str, name: str = "exp", epochs: int = 1) -> Path:
    return write_tiny_run(tmp_path, name, epochs=epochs, extra=text)


# --- parsing and validation -----------------------------------------------------------------------

def test_a_sweep_section_parses_into_tune_domains(tmp_path: Path) -> None:
    plan = load_sweep(write(tmp_path, SWEEP))
    assert plan.name == "exp-sweep" and plan.variant == "base" and plan.seed == 0 and plan.epochs == 1
    assert [(k, d.kind) for k, d in plan.sweep.space.items()] == [
        ("pretrain.lr", "loguniform"), ("objective.global.temperature", "choice"),
        ("pretrain.batch_size", "randint"), ("pretrain.warmup", "uniform")]
    assert plan.sweep.scheduler.name == "asha" and plan.sweep.searcher.name == "random"
    pytest.importorskip("ray")
    from ray import tune

    from vlpbench.launchers.sweep import search_space

    space = search_space(plan.sweep)
    assert isinstance(space["pretrain.lr"], tune.search.sample.Float)
    assert isinstance(space["pretrain.batch_size"], tune.search.sample.Integer)
    assert space["objective.global.temperature"].categories == [0.05, 0.2]


def test_a_trial_is_the_variant_with_the_sampled_values_scored_on_validation(tmp_path: Path) -> None:
    path = write(tmp_path, SWEEP + "variants:\n  warm: {objective.global.temperature: 0.3}\n")
    plan = load_sweep(path)
    spec = plan.trial_spec({"pretrain.lr": 0.01, "objective.local_heads": []}, "trial-000")
    assert spec.config["pretrain"]["lr"] == 0.01 and spec.config["objective"]["global"]["temperature"] == 0.3
    assert spec.overrides == {"objective.global.temperature": 0.3, "pretrain.lr": 0.01, "objective.local_heads": []}
    assert spec.evaluation == "validation" and spec.experiment == "exp-sweep"
    # the same config evaluated on the test split is another run (another hash)
    plain = load_experiment(path).runs[0]
    assert plain.evaluation == "test" and plain.run_hash != plan.trial_spec({}, "t").run_hash


def test_component_parameters_can_be_searched(tmp_path: Path) -> None:
    plan = load_sweep(write(tmp_path, SWEEP.replace(
        "pretrain.warmup: {uniform: [0.0, 0.3]}", "tasks.0.lr: {loguniform: [1.0e-3, 1.0e-1]}")))
    assert plan.trial_spec({"tasks.0.lr": 0.02}, "t").config["tasks"][0]["lr"] == 0.02


@pytest.mark.parametrize("sweep, expected", [
    ("space: {pretrain.lr: {uniform: [0.5, 0.1]}}", ["line 14", "sweep.space.pretrain.lr", "low < high"]),
    ("space: {pretrain.lr: {loguniform: [0, 1]}}", ["positive low bound"]),
    ("space: {pretrain.lr: {choice: [0.1], uniform: [0, 1]}}", ["exactly one of choice, uniform, loguniform, randint"]),
    ("space: {pretrain.lr: {normal: [0, 1]}}", ["unknown key 'sweep.space.pretrain.lr.normal'",
                                               "Valid keys there: choice, uniform, loguniform, randint"]),
    ("space: {pretrain.lrr: {choice: [0.1]}}", ["sweep.space 'pretrain.lrr'", "unknown key", "did you mean 'lr'"]),
    ("space: {pretrain.batch_size: {randint: [1, 8]}}", ["sweep.space 'pretrain.batch_size' = 1", "greater than or equal to 2"]),
    ("space: {optim.lr: {choice: [0.1]}}", ["'optim.lr' does not start with one of data, model"]),
    ("space: {objective.global.name: {choice: [infonce, infonc]}}", ["'infonc'", "did you mean 'infonce'"]),
    ("space: {pretrain.lr: {choice: [0.1]}}\n  metric: linear_prob/auroc@100%",
     ["sweep.metric 'linear_prob/auroc@100%'", "did you mean 'linear_probe'", "pretrain/loss"]),
    ("space: {pretrain.lr: {choice: [0.1]}}\n  samples: 4", ["unknown key 'sweep.samples'", "num_samples"]),
    ("space: {pretrain.lr: {choice: [0.1]}}\n  scheduler: {name: hyperband}", ["sweep.scheduler.name", "asha", "fifo"]),
    ("space: {}", ["sweep.space"]),
    ("space: {pretrain.lr: {choice: [0.1]}}\n  start_points: [{pretrain.batch_size: 8}]",
     ["start_points[0] sets pretrain.batch_size", "pretrain.lr"]),
    ("space: {pretrain.lr: {choice: [0.1]}}\n  num_samples: 1\n  start_points: [{pretrain.lr: 0.1}, {pretrain.lr: 0.2}]",
     ["2 start_points but num_samples is 1"]),
    ("space: {pretrain.lr: {loguniform: [1.0e-4, 1.0e-2]}}\n  start_points: [{pretrain.lr: -1}]",
     ["sweep.start_points[0] = {'pretrain.lr': -1} does not give a valid config", "pretrain.lr"]),
])
def test_bad_sweep_sections_get_one_paragraph(tmp_path: Path, sweep: str, expected: list[str]) -> None:
    text = "sweep:\n  " + sweep + "\n"
    if "metric:" not in sweep:
        text += "  metric: pretrain/loss\n"
    text += "  mode: min\n"
    with pytest.raises(ConfigError) as info:
        load_sweep(write(tmp_path, text))
    message = str(info.value)
    assert "exp.yaml" in message and "\n" not in message
    for fragment in expected:
        assert fragment in message, message


def test_no_sweep_section_or_several_variants(tmp_path: Path, cli) -> None:
    code, _, err = cli("sweep", str(write(tmp_path, "")))
    assert code == 2 and "no 'sweep:' section" in err and "Traceback" not in err
    path = write(tmp_path, SWEEP + "variants:\n  a: {}\n  b: {pretrain.lr: 0.1}\n")
    code, _, err = cli("sweep", str(path))
    assert code == 2 and "--variant" in err and "a, b" in err
    assert load_sweep(path, "b").overrides == {"pretrain.lr": 0.1}


def test_resume_without_a_sweep_says_so(tmp_path: Path, cli) -> None:
    pytest.importorskip("ray")
    code, _, err = cli("sweep", str(write(tmp_path, SWEEP)), "--resume", "--results", str(tmp_path / "r"))
    assert code == 2 and "no sweep to resume" in err


# --- validation-split scoring ---------------------------------------------------------------------

def test_validation_source_never_hands_out_the_test_split() -> None:
    from vlpbench.data.synthcxr_source import SynthCXRSource
    from vlpbench.engine.validation import ValidationSource

    source = SynthCXRSource(SynthCXRSource.Params(image_size=32, train_size=40, val_size=16, test_size=24))
    wrapped = ValidationSource(source)
    assert wrapped.split("test") is source.split("val")
    train, held_out, full = wrapped.split("train"), wrapped.split("val"), source.split("train")
    assert len(train) + len(held_out) == len(full) == 40 and len(held_out) == 8
    assert not set(train.patient_ids) & set(held_out.patient_ids)
    assert set(train.patient_ids) | set(held_out.patient_ids) == set(full.patient_ids)
    assert not set(full.patient_ids) & set(source.split("test").patient_ids)
    # every field follows the subset, boxes renumbered to it
    index = int(np.flatnonzero(np.isin(full.patient_ids, held_out.patient_ids))[3])
    mine = int(np.flatnonzero(held_out.patient_ids == full.patient_ids[index])[0])
    assert held_out.sentences[mine] == full.sentences[index]
    np.testing.assert_array_equal(held_out.images[mine], full.images[index])
    np.testing.assert_array_equal(held_out.boxes_of(mine), full.boxes_of(index))
    assert wrapped.protocol()["evaluation"] == "validation" and "evaluation" not in source.protocol()
    assert wrapped.label_names == source.label_names  # everything else is the source's


def test_validation_mode_protocols_never_share_a_column_with_test_ones(tmp_path: Path) -> None:
    from vlpbench.engine.rundir import run_dir
    from vlpbench.engine.execute import execute_run

    path = write(tmp_path, SWEEP)
    test_spec = load_experiment(path).runs[0]
    val_spec = load_sweep(path).trial_spec({}, "base")
    protocols = {}
    for spec in (test_spec, val_spec):
        run = run_dir(tmp_path / "r", spec.experiment, spec.run_id)
        execute_run(spec, run, progress=False)
        protocols[spec.evaluation] = json.loads(run.file("metrics.json").read_text())["linear_probe"]["protocols"]["auroc@100%"]
    assert protocols["validation"]["dataset"]["evaluation"] == "validation"
    assert protocols["validation"]["hash"] != protocols["test"]["hash"]


def test_reference_runs_keep_their_identity() -> None:
    """The published board's run directories still match the experiment file's run hashes."""
    reference = REPO / "results" / "reference" / "ablation" / "runs"
    if not reference.is_dir():
        pytest.skip("no reference board")
    published = {p.name for p in reference.iterdir() if (p / "config.yaml").is_file()}
    planned = {r.run_id for r in load_experiment(REPO / "experiments" / "ablation.yaml").runs}
    assert published and published <= planned


# --- Ray Tune end to end --------------------------------------------------------------------------

ASHA = """\
sweep:
  space:
    pretrain.lr: {loguniform: [1.0e-5, 1.0e-1]}
    objective.global.temperature: {choice: [0.05, 0.2]}
  metric: linear_probe/auroc@100%
  mode: max
  num_samples: 4
  max_concurrent: 1
  start_points:
    - {pretrain.lr: 1.0e-3, objective.global.temperature: 0.05}
    - {pretrain.lr: 1.0e-3, objective.global.temperature: 0.2}
    - {pretrain.lr: 1.0e-9, objective.global.temperature: 0.05}
    - {pretrain.lr: 1.0e-1, objective.global.temperature: 0.05}
  scheduler: {name: asha, grace_period: 1, reduction_factor: 3}
  searcher: {name: optuna, seed: 0}
"""


@pytest.mark.integration
def test_an_asha_sweep_stops_poor_trials_early_and_saves_the_best(tmp_path: Path, cli) -> None:
    pytest.importorskip("ray")
    pytest.importorskip("optuna")
    # One trial at a time: which trial ASHA stops depends on the order trials reach a rung, and with
    # concurrent trials that order is a race (CI once saw no trial stopped). Sequential trials from fixed
    # start points, the last one diverging (lr 0.1), make the decision the same on every run.
    path = write(tmp_path, ASHA, name="asha", epochs=3)
    code, out, err = cli("sweep", str(path), "--results", str(tmp_path / "results"), "--num-cpus", "2")
    assert code == 0, out + err
    folder = tmp_path / "results" / "asha-sweep"
    summary = json.loads((folder / "sweep.json").read_text())
    trials = summary["trials"]
    assert len(trials) == 4 and summary["split"] == "validation"
    stopped = [t for t in trials if t["state"] == "stopped"]
    assert stopped and all(t["epochs"] < 3 for t in stopped)  # ASHA stopped a trial early
    assert sorted(t["values"]["pretrain.lr"] for t in trials) == [1.0e-9, 1.0e-3, 1.0e-3, 1.0e-1]  # the start points ran
    assert [t["values"]["pretrain.lr"] for t in stopped] == [1.0e-1]
    for trial in stopped:
        assert json.loads((Path(trial["run"]) / "status.json").read_text())["state"] == "stopped"
    finished = [t for t in trials if t["state"] == "finished"]
    best = summary["best"]
    assert best["metric"] == max(t["metric"] for t in finished)
    # every trial is an ordinary run directory, and the board lists them
    runs = sorted(p.name.split("__")[0] for p in (folder / "runs").iterdir())
    assert runs == sorted(t["label"] for t in trials)
    board = (folder / "leaderboard.md").read_text()
    assert all(f"| {t['label']}" in board for t in trials)
    # the metric came from the validation split
    metrics = json.loads((Path(best["run"]) / "metrics.json").read_text())
    assert metrics["linear_probe"]["protocols"]["auroc@100%"]["dataset"]["evaluation"] == "validation"
    # best.yaml is a runnable experiment with the best trial's configuration, without the sweep
    best_file = folder / "best.yaml"
    assert str(best_file) in out
    data = yaml.safe_load(best_file.read_text())
    assert "sweep" not in data and data["name"] == "asha-best"
    best_config = yaml.safe_load((Path(best["run"]) / "config.yaml").read_text())["config"]
    assert load_experiment(best_file).runs[0].config == best_config


RESUME = """\
sweep:
  space:
    pretrain.lr: {loguniform: [1.0e-4, 1.0e-2]}
  metric: pretrain/loss
  mode: min
  num_samples: 3
  max_concurrent: 1
  scheduler: {name: fifo}
"""


@pytest.mark.integration
def test_an_interrupted_sweep_resumes(tmp_path: Path, cli) -> None:
    pytest.importorskip("ray")
    path = write(tmp_path, RESUME, name="resume")
    results = tmp_path / "results"
    runs = results / "resume-sweep" / "runs"
    log = tmp_path / "sweep.log"
    with log.open("w") as stream:
        process = subprocess.Popen([sys.executable, "-m", "vlpbench", "sweep", str(path), "--results", str(results),
                                    "--num-cpus", "1"], stdout=stream, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        finished: list[Path] = []
        while not finished:
            assert time.time() < deadline and process.poll() is None, log.read_text()[-3000:]
            finished = [p.parent for p in runs.glob("*/status.json")
                        if json.loads(p.read_text())["state"] == "finished"] if runs.is_dir() else []
            time.sleep(0.3)
        process.send_signal(signal.SIGINT)  # Ctrl+C
        assert process.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    assert "continue it with" in log.read_text() and "--resume" in log.read_text()
    [first] = finished
    before = (first / "metrics.json").stat().st_mtime_ns
    code, out, err = cli("sweep", str(path), "--results", str(results), "--num-cpus", "1", "--resume")
    assert code == 0, out + err
    summary = json.loads((results / "resume-sweep" / "sweep.json").read_text())
    assert [t["state"] for t in summary["trials"]] == ["finished"] * 3
    assert (first / "metrics.json").stat().st_mtime_ns == before  # the finished trial was not run again
    assert len(list(runs.iterdir())) == 3 and (results / "resume-sweep" / "best.yaml").is_file()


ONE_TRIAL = RESUME.replace("num_samples: 3", "num_samples: 1")


@pytest.mark.integration
def test_a_sweep_starts_its_own_ray_even_when_another_is_named_in_the_environment(
        tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ray.init()`` would connect to RAY_ADDRESS (here: nobody's) or to the last cluster started on
    the machine; the sweep starts its own, in a temp dir of its own, and removes it."""
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # a cluster that is not ours (and not there)
    path = write(tmp_path, ONE_TRIAL, name="own")
    code, out, err = cli("sweep", str(path), "--results", str(tmp_path / "results"), "--num-cpus", "1")
    assert code == 0, out + err
    [line] = [line for line in out.splitlines() if line.startswith("Ray: started a local cluster at")]
    assert "127.0.0.1:9" not in line
    temp = Path(line.split("temp dir ")[1].rstrip(")"))
    assert temp.name.startswith("vlpbench-ray-") and not temp.exists()  # shut down and removed
    import ray

    assert not ray.is_initialized()


def test_joining_a_cluster_that_is_not_there_says_so(tmp_path: Path, cli) -> None:
    pytest.importorskip("ray")
    path = write(tmp_path, ONE_TRIAL, name="join")
    code, _, err = cli("sweep", str(path), "--results", str(tmp_path / "r"), "--address", "127.0.0.1:9")
    assert code == 2 and "--address 127.0.0.1:9" in err and "Traceback" not in err
    code, _, err = cli("sweep", str(path), "--launcher", "slurm", "--address", "127.0.0.1:9")
    assert code == 2 and "--address" in err and "its own cluster" in err
