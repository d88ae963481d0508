"""Running an experiment's runs in this process: skip finished runs, resume interrupted ones.

A run goes pending → running → pretrained → finished (or failed). Every file is written
atomically, so stopping at any moment loses at most the current epoch and never corrupts a
finished result.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vlpbench.config.loader import Experiment, RunSpec
from vlpbench.engine.files import read_json, write_json, write_yaml
from vlpbench.engine.progress import RunClock
from vlpbench.engine.rundir import RunDir, run_dir
from vlpbench.errors import UserError


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


def is_stale(run: RunDir) -> bool:
    """A finished run made under another vlpbench version, or under another version of a plugin that
    is installed now (CorruptFile when unreadable). Installing or removing other plugins does not
    make a run stale."""
    from vlpbench.engine.provenance import versions

    path = run.file("provenance.json")
    if not path.is_file():
        return False
    recorded, now = read_json(path, expect=dict).get("versions") or {}, versions()
    if not isinstance(recorded, dict) or recorded.get("vlpbench") != now["vlpbench"]:
        return True
    then = recorded.get("plugins") or {}
    return any(name in then and then[name] != version for name, version in now["plugins"].items())


EpochHook = Callable[[int, float, Callable[[], dict[str, Any]]], None]


def execute_run(spec: RunSpec, run: RunDir, progress: bool = True, stop_after_epoch: int | None = None,
                reuse_pretraining: bool = True, on_epoch_end: EpochHook | None = None,
                report_to: list[str] | tuple[str, ...] = ()) -> None:
    """Pretrain (or resume) one run and evaluate its tasks; write every result file.

    With ``reuse_pretraining``, a finished sibling run that differs only in its tasks lends its
    pretraining (see :mod:`vlpbench.engine.reuse`). On several processes every rank pretrains;
    rank 0 alone writes files and evaluates the tasks while the others wait.

    A run whose spec has ``evaluation == "validation"`` (sweep trials) scores its tasks on the
    validation split (see :mod:`vlpbench.engine.validation`); its protocols say so.
    ``on_epoch_end(epoch, mean epoch loss, evaluate)`` is called after every epoch's checkpoint;
    ``evaluate()`` scores the tasks on the current model (in the run's evaluation mode) and leaves
    the model and the RNG states as they were. ``report_to`` names experiment trackers
    (:mod:`vlpbench.engine.tracking`) that rank 0 logs the run to while it trains.
    """
    if report_to and is_main_process():
        from vlpbench.engine.tracking import Tracking

        tracking = Tracking(report_to, spec, run.path.parent.parent)
        state = "failed"
        try:
            _execute_run(spec, run, progress, stop_after_epoch, reuse_pretraining, on_epoch_end, tracking)
            state = "finished"
        finally:
            tracking.finish(state)
    else:
        _execute_run(spec, run, progress, stop_after_epoch, reuse_pretraining, on_epoch_end, None)


def is_main_process() -> bool:
    from vlpbench.engine.distributed import is_main

    return is_main()


def _execute_run(spec: RunSpec, run: RunDir, progress: bool, stop_after_epoch: int | None, reuse_pretraining: bool,
                 on_epoch_end: EpochHook | None, tracking: Any) -> None:
    import torch

    from vlpbench.engine.checkpoint import save_checkpoint
    from vlpbench.engine.distributed import barrier, is_main, local_rank
    from vlpbench.engine.model import build_run
    from vlpbench.engine.pretrain import pretrain, resolve_device
    from vlpbench.plugins import get_registry
    from vlpbench.tasks.base import Encoders

    config = spec.run_config()
    registry = get_registry()
    main = is_main()
    if main:
        write_run_config(spec, run)
    if config.pretrain.threads:
        torch.set_num_threads(config.pretrain.threads)
    device = resolve_device(config.pretrain.device)
    if device.type == "cuda" and spec.world_size > 1:
        device = torch.device("cuda", local_rank())
    started = time.time()
    built = build_run(config, registry, spec.seed)
    floor = config.floor  # a floor row: the encoders are evaluated as built (vlpbench.config.floor)
    if floor is None:
        refuse_zero_steps(config, built)
    if spec.evaluation == "validation":
        from vlpbench.engine.validation import ValidationSource

        built.data_source = ValidationSource(built.data_source)
    if main:
        prepare_task_data(config.tasks, built.context)
    unstarted = main and run.status().get("state") != "pretrained" and run.latest_epoch_checkpoint() is None
    if unstarted and reuse_pretraining and floor is None:
        reuse_finished_pretraining(spec, run)
    barrier()
    hook = None
    if on_epoch_end is not None:
        def evaluate_now() -> dict[str, Any]:
            from vlpbench.engine.checkpoint import rng_state, set_rng_state

            saved = rng_state()
            try:  # fresh Encoders: features shared between tasks must not outlive this epoch's weights
                encoders = Encoders(built.model.image_encoder, built.model.text_encoder,
                                    precision=config.pretrain.precision)
                return evaluate_tasks(config.tasks, encoders, built.data_source, built.context, device)[0]
            finally:
                set_rng_state(saved)

        def hook(epoch: int, loss: float) -> None:
            on_epoch_end(epoch, loss, evaluate_now)
    final = _load_final(run)
    if final is not None:
        built.model.load_state_dict(final[0])
        result = final[1]
    else:
        if main:
            run.set_status("running", started=started)
        if floor is not None:
            from vlpbench.engine.pretrain import PretrainResult

            result = PretrainResult()  # no pretraining: not one optimiser step
        else:
            result = pretrain(built.model, built.pretrain, config.pretrain, spec.seed, run, device,
                              progress=progress, stop_after_epoch=stop_after_epoch, on_epoch_end=hook,
                              on_log=tracking.log_history if tracking is not None else None)
        if main:
            epochs = 0 if floor is not None else config.pretrain.epochs
            write_json(run.file("history.json"), {"steps": result.history, "active_steps": result.active_steps,
                                                  "total_steps": result.steps, "epochs": epochs,
                                                  "epochs_done": epochs, "complete": True,
                                                  **({"floor": floor} if floor is not None else {})})
            save_checkpoint(run.final_checkpoint, {"model": built.model.state_dict(), "result": result.__dict__})
            run.set_status("pretrained")
    try:
        if main:
            evaluate_and_record(spec, run, built, result, device, progress=progress)
            if tracking is not None:
                tracking.log_results(read_json(run.file("metrics.json")),
                                     read_json(run.file("provenance.json")).get("timings", {}))
    finally:
        barrier()  # the other ranks wait for rank 0's evaluation (also when it fails)


def write_run_config(spec: RunSpec, run: RunDir) -> None:
    """The run's ``config.yaml``: its resolved config and identity (the board's and reuse's input)."""
    write_yaml(run.file("config.yaml"), {
        "experiment": spec.experiment, "variant": spec.variant, "seed": spec.seed, "run_id": spec.run_id,
        "run_hash": spec.run_hash, "overrides": spec.overrides, "data_versions": spec.protocol_versions,
        "variant_index": spec.variant_index, "baseline": spec.baseline, "world_size": spec.world_size,
        "config": spec.config, **({"evaluation": spec.evaluation} if spec.evaluation != "test" else {}),
        **({"set": spec.settings} if spec.settings else {}),  # the command line's --set overrides
    })


def _load_final(run: RunDir) -> tuple[dict[str, Any], Any] | None:
    """The final checkpoint's model state and :class:`PretrainResult` of a pretrained run, or ``None``
    (with a warning naming the file) when it is missing or unreadable: the run then pretrains again
    from its last good epoch checkpoint."""
    import warnings

    from vlpbench.engine.checkpoint import CheckpointError, load_checkpoint
    from vlpbench.engine.pretrain import PretrainResult

    if not run.final_checkpoint.is_file():  # written (atomically) only once pretraining is complete, so a
        return None                         # run stopped after it (state interrupted) keeps its pretraining
    try:
        final = load_checkpoint(run.final_checkpoint)
        return final["model"], PretrainResult(**final["result"])
    except (CheckpointError, KeyError, TypeError) as exc:
        reason = str(exc) if isinstance(exc, CheckpointError) else f"'{run.final_checkpoint}' is not a final checkpoint"
        warnings.warn(f"{reason} Pretraining is resumed from the last good epoch checkpoint instead.", stacklevel=2)
        return None


def refuse_zero_steps(config: Any, built: Any) -> None:
    """A pretraining of zero optimiser steps (a batch larger than the pretraining split) would
    "finish" an untrained model: refuse it before it starts."""
    steps = built.pretrain.steps_per_epoch(config.pretrain.batch_size) * config.pretrain.epochs
    if steps <= 0:
        from vlpbench.errors import ConfigError

        raise ConfigError(
            f"pretraining would take 0 steps: pretrain.batch_size = {config.pretrain.batch_size} is larger than the "
            f"{len(built.pretrain)} pretraining samples (each epoch uses only whole batches). Use a batch size of at "
            "most the pretraining split's size, or more pretraining data.")


def record_metrics(run: RunDir, metrics: dict[str, Any], samples: dict[str, Any]) -> None:
    """Write ``metrics.json`` and ``samples.npz``; a task with a non-finite score fails the run (its
    other tasks' results are kept in the files)."""
    from vlpbench.engine.samples import FILE, write_samples

    for key, reason in write_samples(run.file(FILE), samples).items():
        task, _, column = key.partition("/")
        metrics[task].setdefault("samples_left_out", {})[column] = reason
    write_json(run.file("metrics.json"), metrics)
    failed = {key: result["error"] for key, result in metrics.items() if result.get("error")}
    if failed:
        raise TaskFailed("; ".join(f"task '{key}': {error}" for key, error in failed.items()))


class TaskFailed(UserError):
    """A task produced no valid score (non-finite); the run is marked failed."""


def evaluate_and_record(spec: RunSpec, run: RunDir, built: Any, result: Any, device: Any,
                        progress: bool = False) -> None:
    """Score the tasks on the pretrained encoders; write metrics and provenance; mark finished."""
    from vlpbench.engine.provenance import write_provenance
    from vlpbench.tasks.base import Encoders

    config = spec.run_config()
    built.model.to(device)
    eval_started = time.perf_counter()
    task_data: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    encoders = Encoders(built.model.image_encoder, built.model.text_encoder, precision=config.pretrain.precision)
    try:
        metrics, task_seconds = evaluate_tasks(config.tasks, encoders, built.data_source, built.context, device,
                                               task_data=task_data, samples=samples, progress=progress)
    finally:
        encoders.close()  # removes the evaluation's on-disk feature cache, if it made one
    eval_seconds = time.perf_counter() - eval_started
    write_provenance(
        run.file("provenance.json"), seed=spec.seed, run_hash=spec.run_hash, device=device,
        data=built.data_source.protocol(), task_data=task_data,
        timings={"pretrain_seconds": result.wall_seconds, "eval_seconds": eval_seconds,
                 "task_seconds": task_seconds, "samples_per_second": result.samples_per_second},
        data_statistics=built.data_source.statistics() if hasattr(built.data_source, "statistics") else None,
        pretrain={"steps": result.steps, "resumed_from_epoch": result.resumed_from_epoch,
                  "resumed_from_step": getattr(result, "resumed_from_step", None),
                  "stages": getattr(result, "stages", []), "active_steps": result.active_steps},
        distributed={"world_size": spec.world_size, "negative_scope": built.model.objective.scopes(),
                     **({"rendezvous": f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"}
                        if spec.world_size > 1 and os.environ.get("MASTER_PORT") else {})},
        parameters=sum(p.numel() for p in built.model.parameters()),
        pretraining_reused_from=run.status().get("pretraining_reused_from"),
    )
    if not run.file("config.yaml").is_file():  # the folder was deleted (and recreated) while the run went on
        write_run_config(spec, run)
    record_metrics(run, metrics, samples)
    run.set_status("finished", finished=time.time())


def reuse_finished_pretraining(spec: RunSpec, run: RunDir) -> None:
    """Copy a finished sibling's pretraining into ``run`` when only the tasks differ."""
    from vlpbench.config.identity import pretrain_identity
    from vlpbench.engine.reuse import copy_pretraining, find_reusable_pretraining

    source = find_reusable_pretraining(run, pretrain_identity(spec.config, spec.seed, spec.protocol_versions,
                                                                 spec.world_size))
    if source is not None:
        copy_pretraining(source, run)
        run.set_status("pretrained", pretraining_reused_from=source.path.name)


def prepare_task_data(tasks: list[Any], context: Any) -> None:
    """Build every task and prepare the tasks' own datasets that can be prepared (real datasets
    check their files and build their image store) before pretraining, so that a bad task parameter,
    a missing file or a bad sample stops the run at its start, not after hours of pretraining."""
    from vlpbench.build import build_component
    from vlpbench.plugins import get_registry

    registry = get_registry()
    for task_spec in tasks:
        build_component(registry, "task", task_spec, context)
        dataset_spec = task_spec.params().get("dataset")
        if isinstance(dataset_spec, dict):
            source = build_component(registry, "dataset", dataset_spec, context)
            if hasattr(source, "prepare"):
                source.prepare()


def evaluate_tasks(tasks: list[Any], encoders: Any, data_source: Any, context: Any, device: Any,
                   echo: Callable[[str], None] | None = None,
                   task_data: dict[str, Any] | None = None,
                   samples: dict[str, Any] | None = None,
                   progress: bool = False) -> tuple[dict[str, Any], dict[str, float]]:
    """Every task of a run on the frozen encoders: ``{task key: {scores, protocols, details}}`` and
    the seconds each task took.

    ``task_data``, when given, receives per task the provenance of a task's own dataset when that
    dataset reports one (real datasets: protocol with the manifest hash, skipped bad samples).

    ``samples``, when given, receives per task its per-test-case outputs (``{column: Samples}``).
    A task with a non-finite score keeps no scores and gets an ``error`` (see :func:`record_metrics`).

    A task that compares images with text is skipped (and said so) when there is no text encoder.
    With ``progress``, each task shows a bar (:mod:`vlpbench.engine.progress`) while it runs.
    """
    from vlpbench.build import build_component
    from vlpbench.engine.progress import task_bar
    from vlpbench.plugins import get_registry

    registry = get_registry()
    metrics: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for index, task_spec in enumerate(tasks):
        task = build_component(registry, "task", task_spec, context)
        key = task_spec.name if sum(t.name == task_spec.name for t in tasks) == 1 else f"{task_spec.name}#{index}"
        if encoders.text is None and "text:global" in getattr(task, "requires", ()):
            if echo:
                echo(f"  {key}: skipped (needs a text encoder; this checkpoint has only an image encoder)")
            continue
        dataset_spec = getattr(task.params, "dataset", None)
        source = data_source if dataset_spec is None else build_component(registry, "dataset", dataset_spec, context)
        if source is not data_source and getattr(data_source, "evaluation", "test") == "validation":
            from vlpbench.engine.validation import ValidationSource

            source = ValidationSource(source)
        started = time.perf_counter()
        with task_bar(key, progress):
            outcome = task.evaluate(encoders, source, device)
        metrics[key] = task_metrics(task, outcome)
        if samples is not None and not metrics[key].get("error"):
            samples[key] = outcome.samples
        if task_data is not None and source is not data_source and hasattr(source, "provenance"):
            task_data[key] = source.provenance()
        seconds[key] = time.perf_counter() - started
    return metrics, seconds


def task_metrics(task: Any, outcome: Any) -> dict[str, Any]:
    """A task's entry of ``metrics.json``: scores, protocols, details, the columns it declares and
    its metric version; with an ``error`` and no scores when a score is not finite."""
    import math

    entry = {"scores": outcome.scores, "protocols": outcome.protocols, "details": outcome.details,
             "columns": {c: info.as_dict() for c, info in getattr(outcome, "columns", {}).items()},
             "metric_version": str(getattr(task, "metric_version", "") or "") or None,
             "samples": {c: s.kind for c, s in getattr(outcome, "samples", {}).items()}}
    bad = {c: v for c, v in outcome.scores.items() if not isinstance(v, (int, float)) or not math.isfinite(v)}
    if bad:
        entry.update(scores={}, error="non-finite score(s) " + ", ".join(f"{c} = {v}" for c, v in bad.items())
                     + " (a degenerate model or a test split without both classes); the task gives no result")
    return entry


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
    (:class:`~vlpbench.errors.EnvironmentProblem`: disk full, permissions) and interruptions stop
    the experiment; an interrupted run is marked ``interrupted``.
    """
    from vlpbench.engine.distributed import is_main

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
    from vlpbench.engine.distributed import is_main
    from vlpbench.objective.scope import current_world

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
    from vlpbench.engine.distributed import broadcast_flag, is_main
    from vlpbench.engine.lock import RunLock

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
    from vlpbench.engine.files import remove_temporary

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


def _one_run(spec: RunSpec, run: RunDir, label: str, rerun_stale: bool, progress: bool,
             reuse_pretraining: bool, echo: Callable[[str], None], main: bool, distributed: bool,
             report_to: list[str] | tuple[str, ...], status: dict[str, Any], eta: str) -> RunOutcome:
    from vlpbench.engine.distributed import barrier
    from vlpbench.engine.files import CorruptFile
    from vlpbench.errors import EnvironmentProblem, environment_message

    try:
        run.check()
        target = run
        if run.finished:
            if not is_stale(run):
                echo(f"{label}: finished earlier, skipped ({run.path})")
                return RunOutcome(spec, "skipped")
            if not rerun_stale:
                echo(f"{label}: STALE (finished under other vlpbench/plugin versions); rerun with --rerun-stale")
                return RunOutcome(spec, "stale")
            target = _rerun_dir(run)  # the old run stays until its replacement has finished
            target.check()
    except CorruptFile as exc:
        echo(f"{label}: CORRUPT, left as it is: {exc}")
        return RunOutcome(spec, "corrupt", str(exc))
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


def finished_line(run: RunDir) -> str:
    """``finished in 5m40s (pretrain 2m40s, eval 3m00s): linear_probe auroc@1% 61.2 …``: a finished
    run's times and headline scores (×100, as on the board)."""
    from vlpbench.engine.progress import duration

    timings = read_json(run.file("provenance.json"), expect=dict).get("timings") or {}
    pretrain, evaluation = float(timings.get("pretrain_seconds") or 0), float(timings.get("eval_seconds") or 0)
    scores = []
    for task, result in read_json(run.file("metrics.json"), expect=dict).items():
        columns = result.get("columns") or {}
        for column, value in (result.get("scores") or {}).items():
            if (columns.get(column) or {}).get("headline", True):
                scores.append(f"{task} {column} {100 * float(value):.1f}")
        if result.get("error"):
            scores.append(f"{task}: no result")
    return (f"finished in {duration(pretrain + evaluation)} (pretrain {duration(pretrain)}, eval "
            f"{duration(evaluation)}): " + ", ".join(scores))


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
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001  (best effort)
        pass


def _log_traceback(run: RunDir, exc: BaseException) -> Path | None:
    """Append the traceback of ``exc`` to the run's ``run.log``; its path (``None`` if it cannot be written)."""
    import traceback

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
    from vlpbench.plugins import get_registry

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
