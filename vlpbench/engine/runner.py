"""Running an experiment's runs in this process: skip finished runs, resume interrupted ones, lock
each run, contain each run's failures (:func:`run_experiment`, :func:`run_one`); the execution of one
run is :mod:`vlpbench.engine.execute`.
"""

from __future__ import annotations

import gc
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vlpbench.config.loader import Experiment, RunSpec
from vlpbench.engine.execute import execute_run
from vlpbench.engine.progress import RunClock
from vlpbench.engine.rundir import RunDir, is_stale, run_dir
from vlpbench.engine.scoring import finished_line
from vlpbench.core.errors import EnvironmentProblem, UserError, check_termination, environment_message
from vlpbench.core.plugins import get_registry
from vlpbench.engine.distributed import barrier, broadcast_flag, is_main
from vlpbench.engine.files import CorruptFile, remove_temporary
from vlpbench.engine.lock import RunLock
from vlpbench.objective.scope import current_world



@dataclass
class RunOutcome:
    spec: RunSpec
    state: str  # finished | skipped | stale | failed | corrupt | busy
    message: str = ""


@dataclass
class ExperimentOutcome:
    runs: list[RunOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[RunOutcome]:
        return [r for r in self.runs if r.state in ("failed", "corrupt")]


def run_experiment(
    experiment: Experiment,
    results_root: Path,
    rerun_stale: bool = False,
    progress: bool = True,
    reuse_pretraining: bool = True,
    echo: Callable[[str], None] = print,
    report_to: list[str] | tuple[str, ...] = (),
) -> ExperimentOutcome:
    """Run every run of ``experiment`` that is not finished; one run's failure never stops the others.

    Each run directory is locked first (:mod:`vlpbench.engine.lock`; by rank 0 on several processes):
    a run another ``vlpbench run`` or Slurm job is working on is skipped (state ``busy``). A run whose
    files are unreadable is reported ``corrupt`` and left as it is. A failure inside a run — a user error, an exception in a
    component, running out of memory — marks that run ``failed`` (the traceback goes to its
    ``run.log``) and the next run starts. Only errors of the environment that every run would hit
    (:class:`~vlpbench.core.errors.EnvironmentProblem`: disk full, permissions) and interruptions stop
    the experiment; an interrupted run is marked ``interrupted``.
    """
    main = is_main()
    if not main:
        echo = lambda message: None  # noqa: E731  (rank 0 reports for every process)
    outcome = ExperimentOutcome()
    total = len(experiment.runs)
    clock = RunClock(total)
    for number, spec in enumerate(experiment.runs, 1):
        run = run_dir(results_root, experiment.name, spec.run_id)
        label = f"[{number}/{total}] {spec.variant} seed {spec.seed}"
        started = time.perf_counter()
        check_termination()
        outcome.runs.append(run_one(spec, run, label, rerun_stale=rerun_stale, progress=progress,
                                    reuse_pretraining=reuse_pretraining, echo=echo, report_to=report_to,
                                    eta=clock.suffix() if progress else ""))
        did_work = outcome.runs[-1].state in ("finished", "failed")
        clock.record(time.perf_counter() - started, did_work=did_work)
    return outcome


def run_one(spec: RunSpec, run: RunDir, label: str, rerun_stale: bool = False, progress: bool = True,
            reuse_pretraining: bool = True, echo: Callable[[str], None] = print,
            report_to: list[str] | tuple[str, ...] = (), status: dict[str, Any] | None = None,
            eta: str = "") -> RunOutcome:
    """One run, under its lock: skip it when another process has it, clean what a killed writer left,
    then train and evaluate it (or skip, or rerun it when stale) with its failures contained.

    Every process of a multi-process run calls this; rank 0 alone takes the lock and the others learn
    its answer from a broadcast (:func:`claim_run`), so all of them skip a busy run together.
    ``status``: fields recorded in ``status.json`` when the run starts (e.g. the Slurm job); ``eta``:
    appended to the line that says the run starts (the experiment's remaining time).
    """
    main, distributed = is_main(), current_world().distributed
    lock, holder = claim_run(run)
    if holder is not None:
        echo(f"{label}: in progress in another process ({holder}), skipped")
        return RunOutcome(spec, "busy", f"locked by {holder}")
    try:
        if lock is not None and lock.stale:
            echo(f"{label}: the process that was running it (host {lock.stale.get('host')}, pid "
                 f"{lock.stale.get('pid')}) is gone; taking over")
        return _one_run(spec, run, label, rerun_stale, progress, reuse_pretraining, echo, main, distributed,
                        report_to, status or {}, eta)
    finally:
        if lock is not None:
            lock.release()


def claim_run(run: RunDir) -> tuple[Any, str | None]:
    """Take ``run``'s lock and clean its leftovers: ``(lock, None)``, or ``(None, holder)`` when another
    process is working on it. On several processes rank 0 takes the lock (``None`` elsewhere) and
    broadcasts whether it got it; the broadcast also keeps the other ranks from reading the run
    folder before rank 0 has finished cleaning it."""
    lock: RunLock | None = None
    holder: str | None = None
    if is_main():
        lock = RunLock(run.path)
        if lock.acquire():
            _clean_leftovers(run)
        else:
            holder, lock = lock.holder(), None
    if not broadcast_flag(holder is None):
        return None, holder or "rank 0 found it locked by another process"
    return lock, None


def _clean_leftovers(run: RunDir) -> None:
    """Temporary files of writes killed midway, and the remains of an interrupted stale rerun's swap."""
    for folder in (run.path, run.checkpoints, run.path.parent):
        remove_temporary(folder)
    fresh, old = _rerun_dir(run), run.path.parent / f".{run.path.name}.old"
    if old.is_dir():  # killed between the two renames of the swap
        if not run.file("config.yaml").is_file() and fresh.finished:
            shutil.rmtree(run.path, ignore_errors=True)
            fresh.path.rename(run.path)
        shutil.rmtree(old, ignore_errors=True)


def _rerun_dir(run: RunDir) -> RunDir:
    """Where ``--rerun-stale`` builds a run's replacement (hidden from the board and the reuse scan)."""
    return RunDir(run.path.parent / f".{run.path.name}.rerun")


def _replace(run: RunDir, fresh: RunDir) -> None:
    """Put the finished ``fresh`` run in place of ``run``; the old one is deleted only afterwards."""
    old = run.path.parent / f".{run.path.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    run.path.rename(old)
    fresh.path.rename(run.path)
    shutil.rmtree(old, ignore_errors=True)


def _target(spec: RunSpec, run: RunDir, label: str, rerun_stale: bool,
            echo: Callable[[str], None]) -> RunDir | RunOutcome:
    """Where the run executes: its own directory, or a fresh one beside it for the rerun of a stale
    run (the old one stays until its replacement has finished); or the outcome when it does not run
    (finished earlier, stale without ``--rerun-stale``, corrupt files)."""
    try:
        run.check()
        if not run.finished:
            return run
        if not is_stale(run):
            echo(f"{label}: finished earlier, skipped ({run.path})")
            return RunOutcome(spec, "skipped")
        if not rerun_stale:
            echo(f"{label}: STALE (finished under other vlpbench/plugin versions); rerun with --rerun-stale")
            return RunOutcome(spec, "stale")
        target = _rerun_dir(run)
        target.check()
        return target
    except CorruptFile as exc:
        echo(f"{label}: CORRUPT, left as it is: {exc}")
        return RunOutcome(spec, "corrupt", str(exc))


def _one_run(spec: RunSpec, run: RunDir, label: str, rerun_stale: bool, progress: bool,
             reuse_pretraining: bool, echo: Callable[[str], None], main: bool, distributed: bool,
             report_to: list[str] | tuple[str, ...], status: dict[str, Any], eta: str) -> RunOutcome:

    target = _target(spec, run, label, rerun_stale, echo)
    if isinstance(target, RunOutcome):
        return target
    resuming = target.latest_epoch_checkpoint() is not None or target.status().get("state") == "pretrained"
    echo(f"{label}: {'resuming' if resuming else 'running'} -> {run.path}{eta}")
    try:
        if main and status:
            target.set_status(target.status().get("state") or "pending", **status)
        execute_run(spec, target, progress=progress, reuse_pretraining=reuse_pretraining, report_to=report_to)
        if main and target is not run:
            _replace(run, target)
        barrier()
        if run.status().get("pretraining_reused_from"):
            echo(f"{label}: pretraining reused from {run.status()['pretraining_reused_from']} (only the tasks differ)")
        if progress and main:
            echo(f"{label}: {finished_line(run)}")
    except EnvironmentProblem as exc:
        _mark(target, main, "failed", error=str(exc))
        raise
    except UserError as exc:
        _mark(target, main, "failed", error=str(exc))
        echo(f"{label}: FAILED: {exc}")
        return RunOutcome(spec, "failed", str(exc))
    except Exception as exc:
        message = environment_message(exc)
        if isinstance(exc, OSError) and message is not None:  # every later run would hit it too
            _mark(target, main, "failed", error=message)
            raise EnvironmentProblem(message) from exc
        if distributed:  # the other ranks are inside collectives: the run cannot be left alone
            _mark(target, main, "failed", error=_one_line(f"{type(exc).__name__}: {exc}"))
            raise
        log = _log_traceback(target, exc) if main else None
        where = f"; traceback in {log}" if log else ""
        error = (_one_line(f"{message} [{type(exc).__name__}: {exc}]")[:600] if message is not None
                 else f"{blame(exc)}{where}")
        _release_memory()
        _mark(target, main, "failed", error=error)
        echo(f"{label}: FAILED: {error}")
        return RunOutcome(spec, "failed", error)
    except BaseException as exc:  # KeyboardInterrupt, SIGTERM (Terminated), SystemExit
        _mark(target, main, "interrupted", error=_one_line(f"{type(exc).__name__}: {exc}") or type(exc).__name__)
        raise
    return RunOutcome(spec, "finished")


def _mark(run: RunDir, main: bool, state: str, **extra: Any) -> None:
    """Record a failed or interrupted run's state; a full disk must not hide the original error."""
    if not main:
        return
    try:
        run.set_status(state, **extra)
    except (OSError, UserError):
        pass


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _release_memory() -> None:
    """After a run failed (out of memory, above all), free what its objects held before the next run."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001  (best effort)
        pass


def _log_traceback(run: RunDir, exc: BaseException) -> Path | None:
    """Append the traceback of ``exc`` to the run's ``run.log``; its path (``None`` if it cannot be written)."""
    path = run.file("run.log")
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} run failed\n")
            handle.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    except OSError:
        return None
    return path


def blame(exc: BaseException) -> str:
    """One line naming what raised ``exc``: the component (kind, name, plugin) whose module holds the
    innermost frame of the traceback that belongs to a registered component, else vlpbench itself."""
    entries = get_registry().all_entries()
    modules: dict[str, Any] = {}
    packages: dict[str, Any] = {}
    for entry in entries:
        if entry.kind in ("launcher", "preset"):  # not run-time components (the local launcher is this module)
            continue
        module = entry.target.partition(":")[0]
        modules.setdefault(module, entry)
        if entry.origin != "vlpbench":
            packages.setdefault(module.split(".")[0], entry)
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    what = _one_line(f"{type(exc).__name__}: {exc}")[:300]
    for module in reversed(frames):
        entry = modules.get(module) or packages.get(module.split(".")[0])
        if entry is not None:
            return f"{entry.kind} '{entry.name}' (plugin '{entry.origin}') raised {what}"
    return f"internal error {what} (a bug in vlpbench; please report it with the traceback)"


class LocalLauncher:
    """Runs every run of an experiment in this process, one after the other."""

    Params = None

    def __init__(self, params: Any = None, context: Any = None) -> None:
        pass

    def launch(self, experiment: Experiment, results_root: Path, **options: Any) -> ExperimentOutcome:
        return run_experiment(experiment, results_root, **options)
