"""The pure parts of benchmarks/bench_noise.py (issue 18) on hand-made numbers: no training."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_noise.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_noise", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_headline_scores_keep_headline_columns_and_skip_failed_tasks(bench):
    metrics = {
        "segmentation": {"scores": {"dice@1%": 0.5, "pooled_dice@1%": 0.6},
                         "columns": {"dice@1%": {"headline": True}, "pooled_dice@1%": {"headline": False}}},
        "zero_shot": {"scores": {"auroc": 0.7}},  # a column the task does not describe counts as headline
        "detection": {"scores": {}, "error": "non-finite score"},
    }
    assert bench.headline_scores(metrics) == {"segmentation dice@1%": 0.5, "zero_shot auroc": 0.7}


def test_downstream_seed_overrides_move_head_seeds_never_the_sampling_seed(bench):
    dense = SimpleNamespace(train_seed=3, sampling_seed=42)
    probe = SimpleNamespace(probe_seeds=[0, 1], sampling_seed=42)
    assert bench.downstream_seed_overrides(dense, 0) == {}
    assert bench.downstream_seed_overrides(dense, 2) == {"train_seed": 5}
    # two probe seeds per repetition: repetitions 1 and 2 use disjoint pairs
    assert bench.downstream_seed_overrides(probe, 1) == {"probe_seeds": [2, 3]}
    assert bench.downstream_seed_overrides(probe, 2) == {"probe_seeds": [4, 5]}
    assert bench.downstream_seed_overrides(SimpleNamespace(), 4) == {}  # zero-shot, retrieval: no seed


def test_mean_std_is_the_sample_standard_deviation(bench):
    mean, std = bench.mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))
    assert math.isnan(bench.mean_std([1.0])[1]) and math.isnan(bench.mean_std([])[0])


def test_noise_table_points_ratio_targets_and_same_seed_difference(bench):
    repetitions = [{"linear_probe auroc@1%": 0.70, "segmentation dice@1%": 0.40, "zero_shot auroc": 0.7},
                   {"linear_probe auroc@1%": 0.71, "segmentation dice@1%": 0.50, "zero_shot auroc": 0.7},
                   {"linear_probe auroc@1%": 0.72, "segmentation dice@1%": 0.60, "zero_shot auroc": 0.7}]
    seeds = [{"linear_probe auroc@1%": 0.68, "segmentation dice@1%": 0.30},
             {"linear_probe auroc@1%": 0.72, "segmentation dice@1%": 0.50}]
    rows = {r["column"]: r for r in bench.noise_table(repetitions, seeds, this_run={"linear_probe auroc@1%": 0.70},
                                                      reference_same_seed={"linear_probe auroc@1%": 0.69})}
    probe, seg, zero = rows["linear_probe auroc@1%"], rows["segmentation dice@1%"], rows["zero_shot auroc"]
    assert probe["noise_mean"] == pytest.approx(71.0) and probe["noise_std"] == pytest.approx(1.0)
    assert (probe["noise_min"], probe["noise_max"]) == (pytest.approx(70.0), pytest.approx(72.0))
    assert probe["seed_std"] == pytest.approx(math.sqrt(8)) and probe["ratio"] == pytest.approx(1 / math.sqrt(8))
    assert probe["target"] == 1.0 and probe["meets"] is True  # exactly on the target meets it
    assert probe["run_minus_reference"] == pytest.approx(1.0)
    assert seg["noise_std"] == pytest.approx(10.0) and seg["target"] == 2.0 and seg["meets"] is False
    assert seg["ratio"] == pytest.approx(10 / math.sqrt(200))
    assert math.isnan(seg["run_minus_reference"])  # not in this_run
    assert zero["noise_std"] == 0.0 and zero["target"] is None and zero["meets"] is None and zero["seeds"] == 0
    text = bench.format_noise_table(list(rows.values()))
    assert "| segmentation dice@1% | 50.0 ± 10.00 (40.0–60.0), 3 | 40.0 ± 14.1, 2 | 0.71 | — | ≤ 2.0 | **no** |" in text


def test_target_for_duplicate_task_keys(bench):
    assert bench.target_for("linear_probe#2 auroc@10%") == 1.0
    assert bench.target_for("detection mAP@1%") == 2.0
    assert bench.target_for("retrieval i2t/strict/R@10") is None


def test_cross_machine_pairs_runs_by_variant_and_seed(bench):
    reference = [{"variant": "clip", "seed": 0, "run_hash": "a", "scores": {"x": 0.50, "y": 0.20}},
                 {"variant": "clip", "seed": 1, "run_hash": "b", "scores": {"x": 0.40}},
                 {"variant": "oracle", "seed": 0, "run_hash": "c", "scores": {"x": 0.60}}]
    fresh = [{"variant": "oracle", "seed": 0, "run_hash": "c", "scores": {"x": 0.45}},
             {"variant": "clip", "seed": 0, "run_hash": "z", "scores": {"x": 0.52, "y": 0.20}},
             {"variant": "fane", "seed": 0, "run_hash": "d", "scores": {"x": 0.1}}]  # not in the reference
    pairs = bench.cross_machine(fresh, reference)
    assert [(p["variant"], p["seed"], p["same_identity"]) for p in pairs] == [("clip", 0, False), ("oracle", 0, True)]
    assert pairs[0]["diff"] == {"x": pytest.approx(2.0), "y": pytest.approx(0.0)}
    assert pairs[1]["diff"] == {"x": pytest.approx(-15.0)}
    largest = {r["column"]: r for r in bench.largest_differences(pairs)}
    assert largest["x"]["pairs"] == 2 and largest["x"]["mean_abs"] == pytest.approx(8.5)
    assert largest["x"]["max_signed"] == pytest.approx(-15.0) and largest["x"]["at"] == "oracle seed 0"
    assert "| x | 2 | 8.5 | 15.0 (-15.0, oracle seed 0) |" in bench.format_cross_machine(list(largest.values()))


def test_read_runs_reads_finished_runs_only(bench, tmp_path):
    def make(name, state, variant="clip", seed=0):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(f"variant: {variant}\nseed: {seed}\nrun_hash: h{seed}\n")
        (run / "metrics.json").write_text(json.dumps({"zero_shot": {"scores": {"auroc": 0.6}}}))
        (run / "status.json").write_text(json.dumps({"state": state}))

    make("clip__seed0__x", "finished")
    make("clip__seed1__x", "failed", seed=1)
    runs = bench.read_runs(tmp_path)
    assert [(r["variant"], r["seed"], r["run_hash"], r["scores"]) for r in runs] == [("clip", 0, "h0", {"zero_shot auroc": 0.6})]
    assert bench.read_runs(tmp_path / "runs" / "clip__seed0__x")[0]["seed"] == 0  # one run folder


def test_compare_only_reports_differences_in_units_of_the_reference_floor(bench, tmp_path, capsys):
    def make(root, variant, seed, run_hash, dice):
        run = root / "runs" / f"{variant}__seed{seed}__{run_hash}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(f"variant: {variant}\nseed: {seed}\nrun_hash: {run_hash}\n")
        (run / "metrics.json").write_text(json.dumps({"segmentation": {"scores": {"dice@1%": dice}}}))
        (run / "status.json").write_text(json.dumps({"state": "finished"}))

    reference, fresh = tmp_path / "reference", tmp_path / "fresh"
    make(reference, "clip", 0, "a", 0.60)
    make(reference, "fane", 0, "b", 0.50)
    make(fresh, "clip", 0, "a", 0.63)    # +3.0 points
    make(fresh, "fane", 0, "b", 0.49)    # -1.0 point
    (reference / "noise_floor.json").write_text(json.dumps(
        {"variant": "clip", "seed": 0, "repeats": 5, "measured": "today",
         "columns": {"segmentation/dice@1%": {"std": 0.015, "repeats": 5}}}))

    result = bench.main(["--compare-only", "--fresh", str(fresh), "--reference", str(reference)])
    out = capsys.readouterr().out
    assert [p["same_identity"] for p in result["cross_machine"]] == [True, True]
    # largest |difference| 3.0 points at clip seed 0 = 2.0 noise stds of 1.5 points
    assert "| segmentation dice@1% | 2 | 2.0 | 3.0 (+3.0, clip seed 0) | 2.0 |" in out
    assert "noise floor from noise_floor.json" in out

    with pytest.raises(SystemExit):
        bench.main(["--compare-only", "--reference", str(reference)])  # no --fresh
