"""Hostile and clumsy input (issue 16): each test reproduces one defect of the adversarial pass.

Checkpoints never run code, one bad file or one broken component affects only its own run, results
are never lost, resources are bounded, ``validate`` refuses what ``run`` would, the environment's
errors are explained. The finished experiment below (two variants, tiny) is shared; every test that
changes results works on a copy.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import write_tiny_run

TWO_VARIANTS = """
variants:
  a: {}
  b: {objective.global.temperature: 0.2}
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(experiment file, results root) of a finished two-variant tiny experiment."""
    from vlpbench.cli import main

    folder = tmp_path_factory.mktemp("hostile")
    experiment = write_tiny_run(folder, "hostile", pretrain_size=32, epochs=2, extra=TWO_VARIANTS)
    assert main(["run", str(experiment), "--results", str(folder / "results"), "--quiet"]) == 0
    return experiment, folder / "results"


@pytest.fixture
def results(finished, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the finished results: (experiment file, results root)."""
    experiment, root = finished
    shutil.copytree(root, tmp_path / "results")
    return experiment, tmp_path / "results"


def run_folder(root: Path, variant: str) -> Path:
    return next((root / "hostile" / "runs").glob(f"{variant}__seed0__*"))


def status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


class Payload:
    """Unpickling this runs a shell command (what a poisoned checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# -- 1. checkpoints ----------------------------------------------------------------------------------
def test_eval_of_a_poisoned_checkpoint_refuses_it_without_running_it(results, cli, tmp_path: Path) -> None:
    experiment, root = results
    folder = run_folder(root, "a")
    marker = tmp_path / "pwned"
    torch.save({"model": Payload(marker)}, folder / "checkpoints" / "final.pt")
    code, _, err = cli("eval", str(folder), "--experiment", str(experiment), "--label", "x",
                       "--results", str(tmp_path / "out"))
    assert not marker.exists()
    assert code == 2 and "final.pt" in err and "Traceback" not in err and "bug in vlpbench" not in err


def test_resume_skips_a_poisoned_or_truncated_latest_epoch_checkpoint(finished, tmp_path: Path) -> None:
    from vlpbench.config.loader import load_experiment
    from vlpbench.engine.pretrain import Interrupt
    from vlpbench.engine.rundir import run_dir
    from vlpbench.engine.runner import execute_run

    experiment, _ = finished
    spec = load_experiment(experiment, variants=["a"]).runs[0]
    run = run_dir(tmp_path, spec.experiment, spec.run_id)
    with pytest.raises(Interrupt):
        execute_run(spec, run, progress=False, stop_after_epoch=1)
    latest = run.checkpoints / "epoch-001.pt"
    marker = tmp_path / "pwned"
    torch.save({"epoch": 1, "model": Payload(marker)}, latest)
    with pytest.warns(UserWarning, match="epoch-001.pt.*previous epoch checkpoint"):
        execute_run(spec, run, progress=False)
    assert not marker.exists() and run.finished
    assert json.loads(run.file("provenance.json").read_text())["pretrain"]["resumed_from_epoch"] == 1
    # the same run with a truncated newest checkpoint
    again = run_dir(tmp_path / "again", spec.experiment, spec.run_id)
    with pytest.raises(Interrupt):
        execute_run(spec, again, progress=False, stop_after_epoch=1)
    newest = again.checkpoints / "epoch-001.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="epoch-001.pt"):
        execute_run(spec, again, progress=False)
    assert again.finished


def test_checkpoints_hold_plain_data_only(finished) -> None:
    _, root = finished
    folder = run_folder(root, "a")
    for path in (folder / "checkpoints").glob("*.pt"):
        torch.load(path, weights_only=True)  # the RNG states are tensors and lists, not numpy objects


def test_eval_of_a_run_with_a_truncated_final_checkpoint_names_the_file(results, cli, tmp_path: Path) -> None:
    experiment, root = results
    final = run_folder(root, "a") / "checkpoints" / "final.pt"
    final.write_bytes(final.read_bytes()[:1000])
    code, _, err = cli("eval", str(final.parent.parent), "--experiment", str(experiment), "--label", "x",
                       "--results", str(tmp_path / "out"))
    assert code == 2 and str(final) in err and "truncated" in err and "Traceback" not in err


# -- 2. guarded reads of run folders -----------------------------------------------------------------
CORRUPTIONS = {
    "truncated-json": ("status.json", lambda p: p.write_text('{"state": "fini')),
    "binary": ("status.json", lambda p: p.write_bytes(b"\x80\x81\xff\x00" * 10)),
    "folder": ("status.json", lambda p: (p.unlink(), p.mkdir())),
    "json-list": ("status.json", lambda p: p.write_text("[1, 2]")),
    "config-garbage": ("config.yaml", lambda p: p.write_text("a: [b\n")),
    "config-list": ("config.yaml", lambda p: p.write_text("- 1\n")),
    "metrics-shape": ("metrics.json", lambda p: p.write_text('{"linear_probe": 3}')),
    "provenance-truncated": ("provenance.json", lambda p: p.write_text('{"versions": ')),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_corrupt_file_marks_only_its_run_corrupt_on_the_board(results, cli, case: str) -> None:
    experiment, root = results
    name, damage = CORRUPTIONS[case]
    folder = run_folder(root, "a")
    damage(folder / name)
    code, out, err = cli("leaderboard", str(root / "hostile"))
    assert code == 0 and "Traceback" not in err
    board = (root / "hostile" / "leaderboard.md").read_text()
    corrupt_line = next(line for line in board.splitlines() if "corrupt" in line)
    assert corrupt_line.startswith("| a ") and name in corrupt_line
    assert any(line.startswith("| b ") for line in board.splitlines())  # the other run is ranked
    # `run` goes on with the other run, reports the corrupt one and writes the board
    code, out, err = cli("run", str(experiment), "--results", str(root), "--quiet")
    assert code == 2 and "CORRUPT" in out and name in out and "Traceback" not in err
    assert "b seed 0: finished earlier" in out
    assert "corrupt" in (root / "hostile" / "leaderboard.md").read_text()


def test_a_corrupt_sibling_does_not_block_a_new_run(results, cli, tmp_path: Path) -> None:
    experiment, root = results
    (run_folder(root, "b") / "status.json").write_bytes(b"\x00garbage")
    changed = tmp_path / "hostile.yaml"  # a task change: new runs, whose reuse scan reads every sibling
    changed.write_text(experiment.read_text().replace("max_epochs: 3", "max_epochs: 2"))
    code, out, err = cli("run", str(changed), "--results", str(root), "--quiet", "--variant", "a")
    assert code == 0 and "Traceback" not in err, err
    assert "pretraining reused from a__seed0" in out


# -- 3. a component's failure fails its run only -----------------------------------------------------
@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install a plugin module (``VLPBENCH_PLUGIN_MODULES``) for the CLI; returns a factory."""
    import vlpbench.plugins as plugins_module

    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def install(name: str, body: str) -> None:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
        created.append(name)
        monkeypatch.setenv("VLPBENCH_PLUGIN_MODULES", ",".join(f"{m}={m}" for m in created))
        plugins_module.reset()

    yield install
    for name in created:
        sys.modules.pop(name, None)
    plugins_module.reset()


FAILING_MINER = """
from vlpbench.hookspecs import hookimpl
from vlpbench.objective.miners import IdentityMiner


class Miner(IdentityMiner):
    def forward(self, inputs):
        raise ValueError("the miner broke")


@hookimpl
def vlpbench_register(registrar):
    registrar.add("positive_miner", "evil.miner", "evil:Miner", "fails at run time")
"""


def test_an_exception_in_a_component_fails_that_run_only(plugin, cli, tmp_path: Path) -> None:
    plugin("evil", FAILING_MINER)
    experiment = write_tiny_run(tmp_path, "isolated", pretrain_size=32, epochs=1, extra="""
variants:
  broken: {objective.positive_miner: {name: evil.miner}}
  fine: {}
""")
    code, out, err = cli("run", str(experiment), "--results", str(tmp_path / "results"), "--quiet")
    assert code == 2 and "Traceback" not in err and "bug in vlpbench" not in err
    runs = tmp_path / "results" / "isolated" / "runs"
    broken, fine = next(runs.glob("broken__*")), next(runs.glob("fine__*"))
    assert status(fine)["state"] == "finished"
    error = status(broken)["error"]
    assert status(broken)["state"] == "failed"
    assert "positive_miner 'evil.miner' (plugin 'evil')" in error and "the miner broke" in error
    assert "Traceback" in (broken / "run.log").read_text() and "Traceback" not in error
    board = (tmp_path / "results" / "isolated" / "leaderboard.md").read_text()
    assert "evil.miner" in board and "fine" in board
