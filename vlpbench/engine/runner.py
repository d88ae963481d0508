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
from vlpbench.engine.rundir import RunDir, run_dir
from vlpbench.errors import UserError


@dataclass
class RunOutcome:
    spec: RunSpec
    state: str  # finished | skipped | stale | failed
    message: str = ""


@dataclass
class ExperimentOutcome:
    runs: list[RunOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[RunOutcome]:
        return [r for r in self.runs if r.state == "failed"]


def is_stale(run: RunDir) -> bool:
    """A finished run made under other vlpbench or plugin versions."""
    from vlpbench.engine.provenance import versions

    path = run.file("provenance.json")
    return path.is_file() and read_json(path).get("versions") != versions()


EpochHook = Callable[[int, float, Callable[[], dict[str, Any]]], None]


def execute_run(spec: RunSpec, run: RunDir, progress: bool = True, stop_after_epoch: int | None = None,
                reuse_pretraining: bool = True, on_epoch_end: EpochHook | None = None) -> None:
    """Pretrain (or resume) one run and evaluate its tasks; write every result file.

    With ``reuse_pretraining``, a finished sibling run that differs only in its tasks lends its
    pretraining (see :mod:`vlpbench.engine.reuse`). On several processes every rank pretrains;
    rank 0 alone writes files and evaluates the tasks while the others wait.

    A run whose spec has ``evaluation == "validation"`` (sweep trials) scores its tasks on the
    validation split (see :mod:`vlpbench.engine.validation`); its protocols say so.
    ``on_epoch_end(epoch, mean epoch loss, evaluate)`` is called after every epoch's checkpoint;
    ``evaluate()`` scores the tasks on the current model (in the run's evaluation mode) and leaves
    the model and the RNG states as they were.
    """
    import torch

    from vlpbench.engine.checkpoint import load_checkpoint, save_checkpoint
    from vlpbench.engine.distributed import barrier, is_main, local_rank
    from vlpbench.engine.model import build_run
    from vlpbench.engine.pretrain import PretrainResult, pretrain, resolve_device
    from vlpbench.plugins import get_registry
    from vlpbench.tasks.base import Encoders

    config = spec.run_config()
    registry = get_registry()
    main = is_main()
    if main:
        write_yaml(run.file("config.yaml"), {
            "experiment": spec.experiment, "variant": spec.variant, "seed": spec.seed, "run_id": spec.run_id,
            "run_hash": spec.run_hash, "overrides": spec.overrides, "data_versions": spec.protocol_versions,
            "variant_index": spec.variant_index, "baseline": spec.baseline, "world_size": spec.world_size,
            "config": spec.config, **({"evaluation": spec.evaluation} if spec.evaluation != "test" else {}),
        })
    if config.pretrain.threads:
        torch.set_num_threads(config.pretrain.threads)
    device = resolve_device(config.pretrain.device)
    if device.type == "cuda" and spec.world_size > 1:
        device = torch.device("cuda", local_rank())
    started = time.time()
    built = build_run(config, registry, spec.seed)
    if spec.evaluation == "validation":
        from vlpbench.engine.validation import ValidationSource

        built.data_source = ValidationSource(built.data_source)
    if main:
        prepare_task_data(config.tasks, built.context)
    if main and reuse_pretraining and run.status().get("state") != "pretrained" and run.latest_epoch_checkpoint() is None:
        reuse_finished_pretraining(spec, run)
    barrier()
    hook = None
    if on_epoch_end is not None:
        def evaluate_now() -> dict[str, Any]:
            from vlpbench.engine.checkpoint import rng_state, set_rng_state

            saved = rng_state()
            try:  # fresh Encoders: features shared between tasks must not outlive this epoch's weights
                encoders = Encoders(built.model.image_encoder, built.model.text_encoder)
                return evaluate_tasks(config.tasks, encoders, built.data_source, built.context, device)[0]
            finally:
                set_rng_state(saved)

        def hook(epoch: int, loss: float) -> None:
            on_epoch_end(epoch, loss, evaluate_now)
    if run.status().get("state") == "pretrained" and run.final_checkpoint.is_file():
        final = load_checkpoint(run.final_checkpoint)
        built.model.load_state_dict(final["model"])
        result = PretrainResult(**final["result"])
    else:
        if main:
            run.set_status("running", started=started)
        result = pretrain(built.model, built.pretrain, config.pretrain, spec.seed, run, device,
                          progress=progress, stop_after_epoch=stop_after_epoch, on_epoch_end=hook)
        if main:
            write_json(run.file("history.json"), {"steps": result.history, "active_steps": result.active_steps,
                                                  "total_steps": result.steps})
            save_checkpoint(run.final_checkpoint, {"model": built.model.state_dict(), "result": result.__dict__})
            run.set_status("pretrained")
    try:
        if main:
            evaluate_and_record(spec, run, built, result, device)
    finally:
        barrier()  # the other ranks wait for rank 0's evaluation (also when it fails)


def evaluate_and_record(spec: RunSpec, run: RunDir, built: Any, result: Any, device: Any) -> None:
    """Score the tasks on the pretrained encoders; write metrics and provenance; mark finished."""
    from vlpbench.engine.provenance import git_commit, hardware, versions
    from vlpbench.tasks.base import Encoders

    config = spec.run_config()
    built.model.to(device)
    eval_started = time.perf_counter()
    task_data: dict[str, Any] = {}
    metrics, task_seconds = evaluate_tasks(config.tasks, Encoders(built.model.image_encoder, built.model.text_encoder),
                                           built.data_source, built.context, device, task_data=task_data)
    eval_seconds = time.perf_counter() - eval_started
    write_json(run.file("metrics.json"), metrics)
    write_json(run.file("provenance.json"), {
        "versions": versions(), "git_commit": git_commit(), "seed": spec.seed, "run_hash": spec.run_hash,
        "data": built.data_source.protocol(),
        "data_statistics": built.data_source.statistics() if hasattr(built.data_source, "statistics") else None,
        **({"task_data": task_data} if task_data else {}),
        "hardware": hardware(device),
        "timings": {"pretrain_seconds": result.wall_seconds, "eval_seconds": eval_seconds,
                    "task_seconds": task_seconds, "samples_per_second": result.samples_per_second},
        "pretrain": {"steps": result.steps, "resumed_from_epoch": result.resumed_from_epoch,
                     "active_steps": result.active_steps},
        "distributed": {"world_size": spec.world_size, "negative_scope": built.model.objective.scopes(),
                        **({"rendezvous": f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"}
                           if spec.world_size > 1 and os.environ.get("MASTER_PORT") else {})},
        "parameters": sum(p.numel() for p in built.model.parameters()),
        "pretraining_reused_from": run.status().get("pretraining_reused_from"),
    })
    run.set_status("finished", finished=time.time())


def reuse_finished_pretraining(spec: RunSpec, run: RunDir) -> None:
    """Copy a finished sibling's pretraining into ``run`` when only the tasks differ."""
    from vlpbench.engine.reuse import copy_pretraining, find_reusable_pretraining, pretrain_identity

    source = find_reusable_pretraining(run, pretrain_identity(spec.config, spec.seed, spec.protocol_versions,
                                                                 spec.world_size))
    if source is not None:
        copy_pretraining(source, run)
        run.set_status("pretrained", pretraining_reused_from=source.path.name)


def prepare_task_data(tasks: list[Any], context: Any) -> None:
    """Load the tasks' own datasets that can be prepared (real datasets read their images) before
    pretraining, so that a missing file or a bad sample stops the run at its start, not after it."""
    from vlpbench.build import build_component
    from vlpbench.plugins import get_registry

    registry = get_registry()
    for task_spec in tasks:
        dataset_spec = task_spec.params().get("dataset")
        if isinstance(dataset_spec, dict):
            source = build_component(registry, "dataset", dataset_spec, context)
            if hasattr(source, "prepare"):
                source.prepare()


def evaluate_tasks(tasks: list[Any], encoders: Any, data_source: Any, context: Any, device: Any,
                   echo: Callable[[str], None] | None = None,
                   task_data: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Every task of a run on the frozen encoders: ``{task key: {scores, protocols, details}}`` and
    the seconds each task took.

    ``task_data``, when given, receives per task the provenance of a task's own dataset when that
    dataset reports one (real datasets: protocol with the manifest hash, skipped bad samples).

    A task that compares images with text is skipped (and said so) when there is no text encoder.
    """
    from vlpbench.build import build_component
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
        outcome = task.evaluate(encoders, source, device)
        metrics[key] = {"scores": outcome.scores, "protocols": outcome.protocols, "details": outcome.details}
        if task_data is not None and source is not data_source and hasattr(source, "provenance"):
            task_data[key] = source.provenance()
        seconds[key] = time.perf_counter() - started
    return metrics, seconds


def run_experiment(
    experiment: Experiment,
    results_root: Path,
    rerun_stale: bool = False,
    progress: bool = True,
    reuse_pretraining: bool = True,
    echo: Callable[[str], None] = print,
) -> ExperimentOutcome:
    from vlpbench.engine.distributed import barrier, is_main

    main = is_main()
    if not main:
        echo = lambda message: None  # noqa: E731  (rank 0 reports for every process)
    outcome = ExperimentOutcome()
    total = len(experiment.runs)
    for number, spec in enumerate(experiment.runs, 1):
        run = run_dir(results_root, experiment.name, spec.run_id)
        label = f"[{number}/{total}] {spec.variant} seed {spec.seed}"
        if run.finished:
            if not is_stale(run):
                echo(f"{label}: finished earlier, skipped ({run.path})")
                outcome.runs.append(RunOutcome(spec, "skipped"))
                continue
            if not rerun_stale:
                echo(f"{label}: STALE (finished under other vlpbench/plugin versions); rerun with --rerun-stale")
                outcome.runs.append(RunOutcome(spec, "stale"))
                continue
            if main:
                shutil.rmtree(run.path)
            barrier()
        resuming = run.latest_epoch_checkpoint() is not None or run.status().get("state") == "pretrained"
        echo(f"{label}: {'resuming' if resuming else 'running'} -> {run.path}")
        try:
            execute_run(spec, run, progress=progress, reuse_pretraining=reuse_pretraining)
            if run.status().get("pretraining_reused_from"):
                echo(f"{label}: pretraining reused from {run.status()['pretraining_reused_from']} (only the tasks differ)")
        except UserError as exc:
            if main:
                run.set_status("failed", error=str(exc))
            echo(f"{label}: FAILED: {exc}")
            outcome.runs.append(RunOutcome(spec, "failed", str(exc)))
            continue
        except BaseException as exc:
            if main:
                run.set_status("failed" if isinstance(exc, Exception) else "interrupted",
                               error=f"{type(exc).__name__}: {exc}")
            raise
        outcome.runs.append(RunOutcome(spec, "finished"))
    return outcome


class LocalLauncher:
    """Runs every run of an experiment in this process, one after the other."""

    Params = None

    def __init__(self, params: Any = None, context: Any = None) -> None:
        pass

    def launch(self, experiment: Experiment, results_root: Path, **options: Any) -> ExperimentOutcome:
        return run_experiment(experiment, results_root, **options)
