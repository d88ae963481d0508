"""``vlpbench run --jobs N``: helper processes take turns over the runs; the board waits for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlpbench.cli import build_parser
from vlpbench.cli.jobs import failed_helpers, helper_argv


def test_a_helper_runs_the_same_experiment_runs_and_settings_silently() -> None:
    args = build_parser().parse_args(["run", "exp.yaml", "--seeds", "0,2", "--variant", "a", "--variant", "b",
                                      "--set", "pretrain.lr=1e-4", "--device", "cpu", "--rerun-stale", "--jobs", "3",
                                      "--results", "out"])
    helper = build_parser().parse_args(helper_argv(args))
    for name in ("file", "seeds", "variant", "set", "device", "rerun_stale", "no_reuse", "results", "report_to"):
        assert getattr(helper, name) == getattr(args, name), name
    assert helper.helper and helper.quiet and helper.jobs == 1  # a helper starts no helpers of its own
    assert not args.helper


def test_failed_helpers_are_reported_in_one_line() -> None:
    assert failed_helpers([0, 0]) is None
    note = failed_helpers([0, 2, 143])
    assert note is not None and "2 of 3" in note and "[2, 143]" in note


def test_jobs_must_be_positive(cli, tiny_experiment: Path, tmp_path: Path) -> None:
    code, _, err = cli("run", str(tiny_experiment), "--jobs", "0", "--results", str(tmp_path / "r"))
    assert code == 2 and "--jobs 0" in err


@pytest.mark.integration
def test_two_jobs_finish_every_run_and_one_board(cli, tiny_experiment: Path, tmp_path: Path) -> None:
    import torch

    results, threads = tmp_path / "results", torch.get_num_threads()
    code, out, err = cli("run", str(tiny_experiment), "--seeds", "0,1,2", "--jobs", "2", "--quiet",
                         "--results", str(results))
    assert code == 0, err
    runs = sorted((results / "tiny" / "runs").iterdir())
    assert len(runs) == 3
    for run in runs:
        assert json.loads((run / "status.json").read_text())["state"] == "finished"
    board = (results / "tiny" / "leaderboard.md").read_text()
    assert "3/3" in board  # written after the helper finished: every seed on it
    assert out.count("written:") == 1  # one board, by this process
    import torch

    assert torch.get_num_threads() == threads  # this process gets its threads back
