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
    from vlpbench.engine.callbacks import Interrupt, StopAfter
    from vlpbench.engine.rundir import run_dir
    from vlpbench.engine.execute import execute_run

    experiment, _ = finished
    spec = load_experiment(experiment, variants=["a"]).runs[0]
    run = run_dir(tmp_path, spec.experiment, spec.run_id)
    with pytest.raises(Interrupt):
        execute_run(spec, run, progress=False, callbacks=[StopAfter(epoch=1)])
    latest = run.checkpoints / "epoch-001.pt"
    marker = tmp_path / "pwned"
    torch.save({"epoch": 1, "model": Payload(marker)}, latest)
    with pytest.warns(UserWarning, match="epoch-001.pt.*previous checkpoint"):
        execute_run(spec, run, progress=False)
    assert not marker.exists() and run.finished
    assert json.loads(run.file("provenance.json").read_text())["pretrain"]["resumed_from_epoch"] == 1
    # the same run with a truncated newest checkpoint
    again = run_dir(tmp_path / "again", spec.experiment, spec.run_id)
    with pytest.raises(Interrupt):
        execute_run(spec, again, progress=False, callbacks=[StopAfter(epoch=1)])
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
FAILING_MINER = """
from vlpbench.core.hookspecs import hookimpl
from vlpbench.objective.miners import IdentityMiner


class Miner(IdentityMiner):
    def forward(self, inputs):
        raise ValueError("the miner broke")


@hookimpl
def vlpbench_register(registrar):
    registrar.add("positive_miner", "evil.miner", "evil:Miner", "fails at run time")
"""


def test_an_exception_in_a_component_fails_that_run_only(throwaway_plugins, cli, tmp_path: Path) -> None:
    throwaway_plugins.share(throwaway_plugins.module("evil", FAILING_MINER))
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


REGISTERS = """
from vlpbench.core.hookspecs import hookimpl

class Thing:
    pass

@hookimpl
def vlpbench_register(registrar):
    registrar.add("positive_miner", "{name}", "{module}:Thing", "a test miner")
"""


def test_sys_exit_in_a_plugin_import_is_contained(throwaway_plugins, monkeypatch, cli) -> None:
    import vlpbench.core.plugins as plugins_module
    from vlpbench.core.plugins import load_plugins

    ep = throwaway_plugins.module("exiter", "import sys\nsys.exit(3)\n")
    with pytest.warns(UserWarning, match="exiter.*SystemExit"):
        loaded = load_plugins(entry_points=[ep])
    assert {p.name: p.status for p in loaded.plugins}["exiter"] == "failed"
    monkeypatch.setattr(plugins_module, "_LOADED", loaded)
    code, out, _ = cli("plugins")
    assert code == 0 and "exiter" in out and "failed" in out


@pytest.mark.parametrize("order", ["intruder-first", "owner-first"])
def test_a_plugin_cannot_take_another_plugins_name_whatever_the_order(throwaway_plugins, order: str) -> None:
    from vlpbench.core.plugins import load_plugins

    owner = throwaway_plugins.module("zowner", REGISTERS.format(name="zowner.miner", module="zowner"))
    intruder = throwaway_plugins.module("aintruder", REGISTERS.format(name="zowner.miner", module="aintruder"))
    with pytest.warns(UserWarning, match="aintruder"):
        loaded = load_plugins(entry_points=[intruder, owner] if order == "intruder-first" else [owner, intruder])
    assert loaded.registry.get("positive_miner", "zowner.miner").origin == "zowner"
    components = {p.name: p.components for p in loaded.plugins}
    assert components["aintruder"] == [] and components["zowner"] == [("positive_miner", "zowner.miner")]


def test_two_plugins_clashing_outside_their_namespaces_both_lose(throwaway_plugins) -> None:
    from vlpbench.core.errors import RegistryError
    from vlpbench.core.plugins import load_plugins

    one = throwaway_plugins.module("onep", REGISTERS.format(name="shared.miner", module="onep"))
    two = throwaway_plugins.module("twop", REGISTERS.format(name="shared.miner", module="twop"))
    for order in ([one, two], [two, one]):
        with pytest.warns(UserWarning, match="shared.miner"):
            loaded = load_plugins(entry_points=order)
        with pytest.raises(RegistryError):
            loaded.registry.get("positive_miner", "shared.miner")


def test_a_misspelt_hook_fails_the_plugin(throwaway_plugins, monkeypatch) -> None:
    from vlpbench.core.errors import PluginError
    from vlpbench.core.plugins import load_plugins

    body = REGISTERS.format(name="typo.miner", module="typo").replace("def vlpbench_register", "def vlpbench_regster")
    ep = throwaway_plugins.module("typo", body)
    with pytest.warns(UserWarning, match="typo.*vlpbench_regster.*did you mean 'vlpbench_register'"):
        loaded = load_plugins(entry_points=[ep])
    assert {p.name: p.status for p in loaded.plugins}["typo"] == "failed"
    monkeypatch.setenv("VLPBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="vlpbench_regster"):
        load_plugins(entry_points=[ep])


def test_schema_lists_what_it_can_and_names_what_it_cannot(throwaway_plugins, monkeypatch, cli) -> None:
    import vlpbench.core.plugins as plugins_module
    from vlpbench.core.plugins import load_plugins

    ep = throwaway_plugins.module("halfgone", REGISTERS.format(name="halfgone.miner", module="halfgone_missing"))
    monkeypatch.setattr(plugins_module, "_LOADED", load_plugins(entry_points=[ep]))
    code, out, err = cli("schema")
    assert code == 0 and "Traceback" not in err
    assert "infonce" in json.loads(out)["$defs"]["global_loss_spec"]["oneOf"][0]["title"]
    assert "halfgone.miner" in err and "halfgone_missing" in err


# -- 4. ${VAR} in paths -------------------------------------------------------------------------------
def test_only_documented_variables_expand_and_validate_says_so(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    experiment = tmp_path / "leak.yaml"
    experiment.write_text("name: leak\ndata: {name: chexpert, root: '${SECRET_TOKEN}/x'}\n"
                          "tasks: [{name: linear_probe}]\n")
    code, _, err = cli("validate", str(experiment))
    assert code == 2 and "$SECRET_TOKEN" in err and "VLPBENCH_DATA" in err and "hunter2" not in err


def test_messages_quote_the_literal_path_not_its_expansion(monkeypatch, tmp_path: Path) -> None:
    from vlpbench.data.real.common import resolve_root
    from vlpbench.core.errors import DataError

    monkeypatch.setenv("VLPBENCH_DATA", str(tmp_path / "private-location"))
    with pytest.raises(DataError) as info:
        resolve_root("${VLPBENCH_DATA}/chexpert", "chexpert")
    assert "${VLPBENCH_DATA}/chexpert" in str(info.value) and "private-location" not in str(info.value)
    (tmp_path / "private-location" / "chexpert").mkdir(parents=True)
    assert resolve_root("${VLPBENCH_DATA}/chexpert", "chexpert") == tmp_path / "private-location" / "chexpert"


# -- 5. results never lost -----------------------------------------------------------------------------
def _make_stale(folder: Path) -> None:
    provenance = json.loads((folder / "provenance.json").read_text())
    provenance["versions"]["vlpbench"] = "0.0.1-old"
    (folder / "provenance.json").write_text(json.dumps(provenance))


def test_rerun_stale_keeps_the_old_run_until_the_new_one_finishes(results, cli, monkeypatch) -> None:
    import vlpbench.engine.pretrain as pretrain_module

    experiment, root = results
    folder = run_folder(root, "a")
    _make_stale(folder)
    metrics = (folder / "metrics.json").read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pretrain_module, "pretrain", killed)
        code, _, _ = cli("run", str(experiment), "--results", str(root), "--quiet", "--rerun-stale", "--variant", "a")
    assert code == 130
    assert (folder / "metrics.json").read_text() == metrics and status(folder)["state"] == "finished"
    code, out, _ = cli("leaderboard", str(root / "hostile"))
    assert "a         | 1/1" in out  # still on the board
    code, _, _ = cli("run", str(experiment), "--results", str(root), "--quiet", "--rerun-stale", "--variant", "a")
    assert code == 0
    assert json.loads((folder / "provenance.json").read_text())["versions"]["vlpbench"] != "0.0.1-old"
    assert [p.name for p in (root / "hostile" / "runs").iterdir() if p.name.startswith(".")] == []


def test_a_slurm_task_reruns_a_stale_run_beside_it_and_skips_a_busy_one(results, monkeypatch) -> None:
    """The Slurm array task goes through the same path as `vlpbench run`: the finished stale run
    stays whole (and 'finished') until its rerun has finished, and a locked run is left alone."""
    pytest.importorskip("submitit")
    import vlpbench.engine.pretrain as pretrain_module
    from vlpbench.config.loader import load_experiment
    from vlpbench.engine.lock import RunLock
    from vlpbench.core.errors import UserError
    from vlpbench.launchers.slurm import RunTask

    experiment, root = results
    folder = run_folder(root, "a")
    spec = next(r for r in load_experiment(experiment).runs if r.variant == "a")
    _make_stale(folder)
    metrics = (folder / "metrics.json").read_text()
    monkeypatch.setenv("SLURM_JOB_ID", "4242")

    def broken(*args, **kwargs):
        raise RuntimeError("a component failed")

    with monkeypatch.context() as patch:
        patch.setattr(pretrain_module, "pretrain", broken)
        with pytest.raises(UserError, match="a seed 0 failed"):
            RunTask()(spec, str(root), True)
    assert (folder / "metrics.json").read_text() == metrics and status(folder)["state"] == "finished"
    assert "slurm_job" not in status(folder)  # the failed attempt wrote to its own folder, not the old run's
    lock = RunLock(folder)
    assert lock.acquire()
    try:
        assert RunTask()(spec, str(root), True) == "busy"
    finally:
        lock.release()
    assert RunTask()(spec, str(root), True) == "finished"
    assert json.loads((folder / "provenance.json").read_text())["versions"]["vlpbench"] != "0.0.1-old"
    assert status(folder)["slurm_job"] == "4242_0"
    assert RunTask()(spec, str(root), True) == "skipped"


def test_leftover_temporary_files_are_removed(results, cli) -> None:
    experiment, root = results
    folder = run_folder(root, "a")
    leftovers = [folder / ".status.json.k2j4h5g6.vlpbench-tmp", folder / "checkpoints" / ".final.pt.a1b2c3d4.vlpbench-tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"half")
    code, _, _ = cli("run", str(experiment), "--results", str(root), "--quiet")
    assert code == 0 and not any(p.exists() for p in leftovers)


def test_a_run_locked_by_another_process_is_skipped(finished, cli, tmp_path: Path) -> None:
    import subprocess

    from vlpbench.config.loader import load_experiment

    experiment, _ = finished
    spec = load_experiment(experiment, variants=["a"]).runs[0]
    folder = tmp_path / "results" / "hostile" / "runs" / spec.run_id
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, json, os, sys, time
        fd = os.open({str(folder / '.lock')!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({{"host": "elsewhere", "pid": os.getpid()}}).encode())
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, out, _ = cli("run", str(experiment), "--results", str(tmp_path / "results"), "--quiet", "--variant", "a")
        assert code == 0 and "in progress in another process (host elsewhere" in out
        assert not (folder / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its lock is stale and the next run takes it over
    code, out, _ = cli("run", str(experiment), "--results", str(tmp_path / "results"), "--quiet", "--variant", "a")
    assert code == 0 and "is gone; taking over" in out and status(folder)["state"] == "finished"


def test_sigterm_marks_the_run_interrupted(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    experiment = write_tiny_run(tmp_path, "term", pretrain_size=64, epochs=200)
    process = subprocess.Popen([sys.executable, "-m", "vlpbench", "run", str(experiment), "--results",
                                str(tmp_path / "results"), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    status_file = None
    deadline = time.time() + 120
    while time.time() < deadline and status_file is None:
        found = list((tmp_path / "results").glob("term/runs/*/status.json"))
        if found and json.loads(found[0].read_text()).get("state") == "running":
            status_file = found[0]
        time.sleep(0.2)
    assert status_file is not None
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and "Traceback" not in err
    assert json.loads(status_file.read_text())["state"] == "interrupted"


def test_a_sigterm_whose_exception_a_finaliser_swallowed_still_stops_the_run(tmp_path: Path, cli, monkeypatch) -> None:
    """Python runs the SIGTERM handler wherever the main thread is; raised inside a finaliser, its
    exception is printed and dropped. The request it recorded stops the run at the next step."""
    import vlpbench.engine.callbacks as callbacks
    from vlpbench.core.errors import request_termination

    seen = []

    def handler_fired_in_a_finaliser(self, state, epoch, loss):
        seen.append(state.done)
        request_termination()  # what the CLI's handler records before its raise (which was lost)

    experiment = write_tiny_run(tmp_path, "lost", pretrain_size=64, epochs=3)
    with monkeypatch.context() as patch:
        patch.setattr(callbacks.PartialHistory, "on_epoch_end", handler_fired_in_a_finaliser)
        code, _, err = cli("run", str(experiment), "--results", str(tmp_path / "results"), "--quiet")
    assert code == 143 and "terminated (SIGTERM)" in err
    folder = next((tmp_path / "results" / "lost" / "runs").iterdir())
    assert status(folder)["state"] == "interrupted" and seen == [4]  # stopped one step into epoch 1
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["epoch-000.pt"]
    code, _, _ = cli("run", str(experiment), "--results", str(tmp_path / "results"), "--quiet")
    assert code == 0 and status(folder)["state"] == "finished"  # the request was cleared: the rerun finishes


def test_a_run_folder_deleted_during_the_run_is_recorded_complete(finished, tmp_path: Path) -> None:
    from vlpbench.board.collect import collect
    from vlpbench.config.loader import load_experiment
    from vlpbench.engine.rundir import run_dir
    from vlpbench.engine.execute import execute_run

    experiment, _ = finished
    spec = load_experiment(experiment, variants=["a"]).runs[0]
    run = run_dir(tmp_path, spec.experiment, spec.run_id)

    def delete_folder(epoch: int, loss: float, evaluate) -> None:
        if epoch == 0:
            shutil.rmtree(run.path)

    execute_run(spec, run, progress=False, on_epoch_end=delete_folder)
    assert run.finished and (run.path / "config.yaml").is_file()
    assert list(collect([tmp_path / spec.experiment]).runs["state"]) == ["finished"]


# -- 6. resource bounds ------------------------------------------------------------------------------------
ALIAS_BOMB = "name: bomb\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))


@pytest.mark.parametrize("text, expected", [
    (ALIAS_BOMB, "aliases expand"),
    ("name: deep\nx: " + "[" * 5000 + "]" * 5000 + "\n", "nests deeper"),
    ("name: many\n" + "".join(f"k{i}: &k{i} 1\n" for i in range(300)) + "v: [" + ", ".join(f"*k{i}" for i in range(300)) + "]\n",
     "aliases"),
])
def test_the_yaml_loader_refuses_bombs_quickly(cli, tmp_path: Path, text: str, expected: str) -> None:
    import time

    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    started = time.perf_counter()
    code, _, err = cli("validate", str(path))
    assert code == 2 and expected in err and "Traceback" not in err
    assert time.perf_counter() - started < 10


def test_a_run_config_alias_bomb_marks_the_run_corrupt(results, cli) -> None:
    experiment, root = results
    (run_folder(root, "a") / "config.yaml").write_text(ALIAS_BOMB)
    code, _, err = cli("leaderboard", str(root / "hostile"))
    assert code == 0 and "aliases expand" in (root / "hostile" / "leaderboard.md").read_text()


def test_sizes_beyond_the_machine_are_refused_before_allocating(cli, tmp_path: Path) -> None:
    path = write_tiny_run(tmp_path, "huge", pretrain_size=1_000_000_000)
    code, _, err = cli("validate", str(path))
    assert code == 2 and "pretrain_size" in err
    with pytest.raises(SystemExit) as info:
        cli("data", "describe", "--size", "1000000000")
    assert info.value.code == 2


def test_sizes_are_checked_against_the_available_memory(monkeypatch) -> None:
    import vlpbench.core.resources as resources
    from vlpbench.data.synthcxr_source import SynthCXRSource
    from vlpbench.core.errors import EnvironmentProblem

    monkeypatch.setattr(resources, "available_memory", lambda: 100 << 20)
    source = SynthCXRSource(SynthCXRSource.Params(pretrain_size=1_000_000, image_size=64))
    with pytest.raises(EnvironmentProblem, match="pretrain_size"):
        source.split("pretrain")


# -- 7. validate refuses what run would ----------------------------------------------------------------------
@pytest.mark.parametrize("change, expected", [
    (("fractions: [1.0]", "fractions: [2.0]"), "fractions"),
    (("arch: resnet18", "arch: resnet18x"), "not a timm model"),
    (("lr: 1.0e-3", "lr: .inf"), "finite"),
    (("seeds: [0]", f"seeds: [{2**70}]"), "seeds"),
    (("threads: 1", "threads: 100000"), "threads"),
    (("name: v", "name: " + "n" * 300), "name"),
    (("variants: {}", 'variants: {"clip\\n": {}}'), "one line"),
])
def test_validate_refuses_what_run_would(cli, tmp_path: Path, change, expected: str) -> None:
    path = write_tiny_run(tmp_path, "v", extra="variants: {}\n")
    path.write_text(path.read_text().replace(*change))
    assert change[1] in path.read_text()
    code, _, err = cli("validate", str(path))
    assert code == 2 and expected in err and "Traceback" not in err


# -- 8. labels --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", ["../../escaped", "a/b", "x\ny", "n" * 300])
def test_eval_labels_stay_inside_the_results_folder(finished, cli, tmp_path: Path, label: str) -> None:
    experiment, root = finished
    code, _, err = cli("eval", str(run_folder(root, "a")), "--experiment", str(experiment), "--label", label,
                       "--results", str(tmp_path / "results" / "inner"))
    assert code == 2 and "--label" in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "escaped").exists()


# -- 9. the environment's errors -------------------------------------------------------------------------------
def test_results_pointing_at_a_file_is_explained(finished, cli, tmp_path: Path) -> None:
    experiment, _ = finished
    (tmp_path / "file").write_text("")
    code, _, err = cli("run", str(experiment), "--results", str(tmp_path / "file"), "--quiet")
    assert code == 2 and "is a file" in err and "bug" not in err


@pytest.mark.parametrize("error, expected", [(28, "no space left"), (30, "read-only")])
def test_a_full_or_read_only_disk_is_explained(finished, cli, tmp_path: Path, monkeypatch, error: int, expected: str) -> None:
    import vlpbench.engine.files as files

    experiment, _ = finished
    real = files._atomic_write

    def failing(path, write, binary):
        if path.suffix == ".pt":
            raise OSError(error, os.strerror(error))
        return real(path, write, binary)

    monkeypatch.setattr(files, "_atomic_write", failing)
    code, _, err = cli("run", str(experiment), "--results", str(tmp_path / "results"), "--quiet", "--variant", "a")
    assert code == 3 and expected in err and "epoch-000.pt" in err
    assert "Traceback" not in err and "bug in vlpbench" not in err
    state = status(run_folder(tmp_path / "results", "a"))
    assert state["state"] == "failed" and expected in state["error"]


def test_gpu_out_of_memory_fails_that_run_only(finished, cli, tmp_path: Path, monkeypatch) -> None:
    import vlpbench.engine.pretrain as pretrain_module

    experiment, _ = finished
    real, calls = pretrain_module.pretrain, []

    def first_runs_out(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "pretrain", first_runs_out)
    code, out, err = cli("run", str(experiment), "--results", str(tmp_path / "results"), "--quiet")
    assert code == 2 and "Traceback" not in err
    assert status(run_folder(tmp_path / "results", "b"))["state"] == "finished"
    failed = status(run_folder(tmp_path / "results", "a"))
    assert failed["state"] == "failed" and "GPU ran out of memory" in failed["error"] and "batch_size" in failed["error"]


def test_a_closed_pipe_is_not_a_bug() -> None:
    import subprocess

    process = subprocess.Popen([sys.executable, "-m", "vlpbench", "plugins"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    process.stdout.close()  # the reader is gone before anything is written (`vlpbench plugins | head -0`)
    err = process.stderr.read().decode()
    process.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err and "bug in vlpbench" not in err


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A real 400 kB tmpfs (needs root, as on CI): too small for a checkpoint."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()[:100]})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_really_full_disk_is_explained(finished, cli, small_tmpfs: Path) -> None:
    experiment, _ = finished
    code, _, err = cli("run", str(experiment), "--results", str(small_tmpfs / "results"), "--quiet", "--variant", "a")
    assert code == 3 and "no space left" in err.lower() and str(small_tmpfs) in err
    assert "Traceback" not in err and "bug in vlpbench" not in err


def test_a_really_read_only_disk_is_explained(finished, cli, small_tmpfs: Path) -> None:
    import subprocess

    experiment, _ = finished
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    code, _, err = cli("run", str(experiment), "--results", str(small_tmpfs / "results"), "--quiet", "--variant", "a")
    assert code in (2, 3) and "read-only" in err.lower() and str(small_tmpfs) in err
    assert "Traceback" not in err and "bug in vlpbench" not in err
