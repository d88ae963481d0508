"""`vlpbench.api`: load, plan, run, read a board — the functions the CLI itself calls (issue 21)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import write_tiny_run


def test_load_plan_run_and_read_a_board(tmp_path: Path) -> None:
    from vlpbench import api

    path = write_tiny_run(tmp_path, "scripted", pretrain_size=48, extra="variants:\n  a: {}\n  b: {pretrain.lr: 2.0e-3}\n")
    experiment = api.load(path, settings={"pretrain.epochs": 1})
    assert [r.variant for r in experiment.runs] == ["a", "b"]
    assert all(r.config["pretrain"]["epochs"] == 1 for r in experiment.runs)
    results = tmp_path / "results"
    assert [p.state for p in api.plan(experiment, results)] == ["new", "new"]
    lines: list[str] = []
    result = api.run(experiment, results, echo=lines.append)
    assert not result.failed and result.folder == results / "scripted"
    assert "| a" in result.board or "a " in result.board
    assert any("[1/2] a seed 0" in line for line in lines)
    assert [p.state for p in api.plan(experiment, results)] == ["finished", "finished"]
    board = api.read_board(results / "scripted")
    assert set(board.summary.reset_index()["variant"]) == {"a", "b"}
    assert board.finished == {"a": 1, "b": 1}


def test_shipped_names_components_and_describe() -> None:
    from vlpbench import api

    assert api.load("quickstart").name == "quickstart"
    assert {c["name"] for c in api.components("global_loss")} >= {"infonce", "sigmoid"}
    (info,) = api.describe("infonce")
    assert info["kind"] == "global_loss" and any(p["name"] == "temperature" for p in info["parameters"])


def test_importing_the_api_imports_nothing_heavy() -> None:
    code = ("import sys; import vlpbench.api; "
            "print(sorted(m for m in ('torch', 'transformers', 'pandas', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
