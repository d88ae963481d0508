"""The pure parts of benchmarks/bench_heads.py (issue 18) on hand-made numbers: no training."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_heads.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(PATH.parent))
    spec = importlib.util.spec_from_file_location("bench_heads", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(table: dict[tuple[int, int], tuple[float, float]]) -> list[dict]:
    return [{"repetition": r, "head": h, "task": "segmentation", "fraction": "1%", "score": s, "val_loss": v}
            for (r, h), (s, v) in table.items()]


def test_mean_and_best_validation_of_k_by_hand(bench) -> None:
    # repetition 0: heads 80 (val 0.5) and 50 (val 2.0, stalled); repetition 1: 78 (0.6) and 82 (0.4)
    table = {(0, 0): (80.0, 0.5), (0, 1): (50.0, 2.0), (1, 0): (78.0, 0.6), (1, 1): (82.0, 0.4)}
    (line,) = bench.summarise(rows(table), heads=2)
    assert line["mean1"] == pytest.approx((79.0, math.sqrt(2)))  # 80 and 78
    assert line["mean2"] == pytest.approx((72.5, math.sqrt(2) * 7.5))  # 65 and 80
    assert line["best2"] == pytest.approx((81.0, math.sqrt(2)))  # 80 and 82: the stalled head is never chosen
    assert line["stalled"] == [50.0] and line["heads_trained"] == 4  # median 79: 50 is more than 10 below
    text = bench.format_summary([line], heads=2)
    assert "| segmentation | 1% | 79.0 ± 1.41 | 72.5 ± 10.61 | 81.0 ± 1.41 | 1 of 4 [50.0] |" in text


def test_overrides_are_task_key_value_with_yaml_values(bench) -> None:
    assert bench.parse_overrides(["segmentation.lr=3e-3", "detection.heads=[2, 1, 1]"]) == {
        "segmentation": {"lr": 3e-3}, "detection": {"heads": [2, 1, 1]}}
    with pytest.raises(SystemExit, match="TASK.KEY=VALUE"):
        bench.parse_overrides(["linear_probe.lr=1"])
