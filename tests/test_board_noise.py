"""The downstream noise floor on the board: a difference is meaningful only when it clears the
multiple-comparison control, twice the column's noise floor and the baseline's seed spread."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.test_leaderboard import write_run
from vlpbench.board.noise import NOISE_FILE, floor_document, load_noise_floor, merge_floor
from vlpbench.board.leaderboard import build_board, write_leaderboard

COLUMN = "linear_probe/auroc@1%"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Five seeds; b beats the baseline a by 0.09–0.11 on every seed (paired p well below 0.05)."""
    root = tmp_path / "exp"
    for seed, (a, b) in enumerate([(0.50, 0.60), (0.51, 0.62), (0.49, 0.58), (0.50, 0.60), (0.50, 0.61)]):
        write_run(root, "a", seed, a, index=0)
        write_run(root, "b", seed, b, index=1)
    return root


def floor_file(root: Path, std: float) -> None:
    (root / NOISE_FILE).write_text(json.dumps(floor_document(
        [{"column": "linear_probe auroc@1%", "noise_std": 100 * std, "repeats": 5}], "a", 0, 5, "2026-11-30")))


def test_without_a_floor_nothing_is_called_meaningful_and_the_board_says_how_to_measure(results: Path) -> None:
    board = build_board([results], "t")
    difference = board.differences.loc[("b", COLUMN)]
    assert difference["p_adjusted"] < 0.05 and difference["meaningful"] is pd.NA
    markdown = write_leaderboard(results)
    assert "✓" not in markdown.split("## Difference")[1].split("##")[0].replace("✓ =", "")
    assert "bench_noise.py --floor" in markdown


def test_a_difference_above_twice_the_floor_and_the_seed_spread_is_meaningful(results: Path) -> None:
    floor_file(results, 0.02)  # 2 × 0.02 = 0.04 < 0.10
    board = build_board([results], "t")
    difference = board.differences.loc[("b", COLUMN)]
    assert difference["noise_floor"] == pytest.approx(0.02)
    assert difference["seed_std"] == pytest.approx(board.summary.loc[("a", COLUMN), "std"])
    assert bool(difference["meaningful"]) is True
    markdown = write_leaderboard(results)
    assert "+10.2 ✓ (p" in markdown and "| noise floor (std)" in markdown and "| 2.0 " in markdown
    csv = pd.read_csv(results / "leaderboard.csv")
    row = csv[(csv["variant"] == "b") & (csv["column"] == COLUMN)].iloc[0]
    assert bool(row["meaningful"]) and row["noise_floor"] == pytest.approx(0.02)
    assert any("noise floor from noise_floor.json (a seed 0, k = 5" in n for n in board.notes)


def test_a_significant_difference_inside_the_noise_floor_is_not_meaningful(results: Path) -> None:
    floor_file(results, 0.06)  # 2 × 0.06 = 0.12 > 0.102: the heads' seeds alone could make it
    board = build_board([results], "t")
    difference = board.differences.loc[("b", COLUMN)]
    assert difference["p_adjusted"] < 0.05 and not bool(difference["meaningful"])
    assert "✓ (p" not in write_leaderboard(results)


def test_a_column_without_a_measured_floor_is_never_meaningful_and_a_bad_file_is_a_note(tmp_path: Path,
                                                                                          results: Path) -> None:
    (results / NOISE_FILE).write_text(json.dumps({"columns": {"segmentation/dice@1%": {"std": 0.01}}}))
    difference = build_board([results], "t").differences.loc[("b", COLUMN)]
    assert difference["noise_floor"] != difference["noise_floor"] and not bool(difference["meaningful"])
    assert "not measured" in write_leaderboard(results)
    (results / NOISE_FILE).write_text("{not json")
    floors, notes = load_noise_floor([results])
    assert floors == {} and "is not a noise floor file" in notes[0]
    board = build_board([results], "t")
    assert board.differences.loc[("b", COLUMN), "meaningful"] is pd.NA


def test_floor_document_maps_bench_noise_columns_to_board_columns() -> None:
    document = floor_document([{"column": "segmentation dice@10%", "noise_std": 5.61, "repeats": 5},
                               {"column": "zero_shot auroc", "noise_std": 0.0, "repeats": 5},
                               {"column": "detection mAP@1%", "noise_std": float("nan"), "repeats": 1}],
                              "clip", 0, 5, "2026-11-30")
    assert document["columns"] == {"segmentation/dice@10%": {"std": pytest.approx(0.0561), "repeats": 5},
                                   "zero_shot/auroc": {"std": 0.0, "repeats": 5}}


def test_floors_of_several_encoders_merge_to_the_largest_per_column(tmp_path: Path) -> None:
    """A head's noise depends on the encoder: each column's floor is the noisiest encoder measured,
    and a remeasurement of the same encoder replaces its earlier figures."""
    clip = floor_document([{"column": "detection mAP@1%", "noise_std": 1.5, "repeats": 5},
                           {"column": "segmentation dice@1%", "noise_std": 1.4, "repeats": 5}], "clip", 0, 5, "day 1")
    sista = floor_document([{"column": "detection mAP@1%", "noise_std": 4.0, "repeats": 5},
                            {"column": "segmentation dice@1%", "noise_std": 0.9, "repeats": 5}], "sista", 0, 5, "day 2")
    merged = merge_floor(clip, sista)
    assert merged["columns"]["detection/mAP@1%"] == {"std": pytest.approx(0.040), "repeats": 5, "variant": "sista seed 0"}
    assert merged["columns"]["segmentation/dice@1%"]["std"] == pytest.approx(0.014)
    assert merged["columns"]["segmentation/dice@1%"]["variant"] == "clip seed 0"
    assert [m["variant"] for m in merged["measurements"]] == ["clip", "sista"]
    assert merged["variant"] == "sista" and merged["measured"] == "day 2"

    remeasured = floor_document([{"column": "detection mAP@1%", "noise_std": 2.0, "repeats": 5}], "sista", 0, 5, "day 3")
    again = merge_floor(merged, remeasured)
    assert [m["variant"] for m in again["measurements"]] == ["clip", "sista"]
    assert again["columns"]["detection/mAP@1%"]["std"] == pytest.approx(0.020)  # sista's earlier 4.0 replaced
    assert again["columns"]["detection/mAP@1%"]["variant"] == "sista seed 0"

    (tmp_path / NOISE_FILE).write_text(json.dumps(merged))
    floors, notes = load_noise_floor([tmp_path])
    assert floors["detection/mAP@1%"] == pytest.approx(0.040)
    assert "clip seed 0" in notes[0] and "sista seed 0" in notes[0] and "the largest" in notes[0]
