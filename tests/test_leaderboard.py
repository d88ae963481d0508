"""The leaderboard from run directories written with known values."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vlpbench.board.leaderboard import build_board, write_leaderboard

PROTOCOL = {"task": "linear_probe", "fraction": 0.01, "sampling_seed": 42, "hash": "aaaa1111"}
BASE_CONFIG = {"objective": {"positive_miner": {"name": "identity"}, "global": {"name": "infonce", "temperature": 0.07}},
               "pretrain": {"batch_size": 64}}


ORACLE_CONFIG = {**BASE_CONFIG, "objective": {**BASE_CONFIG["objective"],
                                              "positive_miner": {"name": "oracle", "mode": "positive"}}}


def write_run(root: Path, variant: str, seed: int, value: float | None, state: str = "finished",
              protocol: dict | None = None, config: dict | None = None, index: int = 0) -> None:
    folder = root / "runs" / f"{variant}__seed{seed}"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "experiment": root.name, "variant": variant, "seed": seed, "run_id": folder.name, "variant_index": index,
        "baseline": "a", "overrides": {}, "config": config or BASE_CONFIG}))
    (folder / "status.json").write_text(json.dumps({"state": state, "error": "boom: out of memory" if state == "failed" else ""}))
    if state != "finished":
        return
    (folder / "metrics.json").write_text(json.dumps({"linear_probe": {
        "scores": {"auroc@1%": value}, "protocols": {"auroc@1%": protocol or PROTOCOL}, "details": {}}}))
    (folder / "provenance.json").write_text(json.dumps({
        "timings": {"pretrain_seconds": 50.0, "eval_seconds": 10.0}, "pretrain": {"steps": 100}, "parameters": 1000}))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "exp"
    for seed, (a, b) in enumerate([(0.5, 0.6), (0.6, 0.8), (0.7, 0.7)]):
        write_run(root, "a", seed, a, index=0)
        write_run(root, "b", seed, b, index=1, config=ORACLE_CONFIG)
    write_run(root, "b", 3, None, state="failed", index=1, config=ORACLE_CONFIG)
    return root


def test_means_stds_confidence_intervals_and_paired_test(results: Path) -> None:
    board = build_board([results], "t")
    a, b = board.summary.loc[("a", "linear_probe/auroc@1%")], board.summary.loc[("b", "linear_probe/auroc@1%")]
    assert (a["n"], a["mean"], a["std"]) == (3, pytest.approx(0.6), pytest.approx(0.1))
    half = 4.302653 * 0.1 / 3 ** 0.5  # t(0.975, 2)·s/√n: these runs saved no per-case samples
    assert (a["ci95_low"], a["ci95_high"]) == (pytest.approx(0.6 - half, abs=1e-6), pytest.approx(0.6 + half, abs=1e-6))
    assert a["ci_method"] == "Student's t over seeds"
    assert b["mean"] == pytest.approx(0.7)
    difference = board.differences.loc[("b", "linear_probe/auroc@1%")]
    # differences 0.1, 0.2, 0.0: t = √3 with 2 degrees of freedom, two-sided p = 1 − √3/√5
    assert difference["difference"] == pytest.approx(0.1) and difference["pairs"] == 3
    assert difference["p"] == pytest.approx(1 - 3 ** 0.5 / 5 ** 0.5, abs=1e-6)
    assert difference["p_adjusted"] == pytest.approx(difference["p"])  # one comparison: nothing to adjust
    assert difference["p_method"] == "paired t-test over seeds"
    assert board.best == {("b", "linear_probe/auroc@1%")} and board.baseline == "a"
    assert board.variants == ["a", "b"]


def test_files_mark_the_best_list_failed_runs_and_show_the_ablation(results: Path) -> None:
    markdown = write_leaderboard(results)
    assert "**70.0 ± 10.0**" in markdown and "| 3/4 " in markdown  # b: three of four runs finished
    assert "Runs not finished" in markdown and "boom: out of memory" in markdown
    assert "positive_miner=oracle" in markdown and "+10.0 (p=0.225, adj.=0.225, 3 seeds)" in markdown
    full = (results / "leaderboard_full.md").read_text()
    assert "[35.2, 84.8]" in full  # 60 ± 24.8
    table = pd.read_csv(results / "leaderboard.csv")
    row = table[(table["variant"] == "b")].iloc[0]
    assert row["mean"] == pytest.approx(0.7) and bool(row["best"]) and row["pairs"] == 3
    tex = (results / "leaderboard.tex").read_text()
    assert r"\toprule" in tex and r"\textbf{70.0 $\pm$ 10.0}" in tex and r"linear\_probe" in tex
    assert "Reported numbers" not in markdown  # published numbers are on the real datasets: not on this board
    assert {"ci95_low", "ci95_high", "p", "p_adjusted", "adjustment", "p_method"} <= set(table.columns)


def test_numbers_of_different_protocols_are_never_ranked_together(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    write_run(root, "a", 0, 0.6)
    other = {**PROTOCOL, "fraction": 0.1, "hash": "bbbb2222"}
    write_run(root, "b", 0, 0.9, protocol=other)
    board = build_board([root], "t")
    assert sorted(board.columns) == ["linear_probe/auroc@1% [protocol aaaa1111]", "linear_probe/auroc@1% [protocol bbbb2222]"]
    assert any("differ in fraction" in note for note in board.notes)
    assert len(board.best) == 2  # each is the best of its own column


def test_boards_of_several_folders_merge(results: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "cluster" / "exp"
    write_run(elsewhere, "c", 0, 0.9, index=2)
    board = build_board([results, elsewhere], "merged")
    assert board.variants == ["a", "b", "c"] and ("c", "linear_probe/auroc@1%") in board.best


def test_planned_runs_without_a_directory_are_listed_as_missing(results: Path) -> None:
    planned = [(v, s) for v in ("a", "b") for s in range(5)]
    board = build_board([results], "t", planned=planned)
    assert board.planned == {"a": 5, "b": 5} and board.finished == {"a": 3, "b": 3}
    missing = board.unfinished[board.unfinished["state"] == "missing"]
    assert sorted(zip(missing["variant"], missing["seed"])) == [("a", 3), ("a", 4), ("b", 4)]


def test_the_ablation_view_names_each_variants_negative_scope() -> None:
    from vlpbench.board.ablation import negative_scope

    assert negative_scope({}) == "local"
    cmcgns = {"objective": {"negative_scope": "gathered", "positive_miner": {"name": "identity"},
                            "local_heads": [{"name": "cmcgns.cross_attention", "scope": "local"}],
                            "negative_weighting": [{"name": "uniform", "scope": "gathered"}]}}
    assert negative_scope(cmcgns) == "gathered (cmcgns.cross_attention: local)"
