"""Scoring a run's frozen encoders with its downstream tasks and recording what they give.

:func:`prepare_task_data` builds every task and prepares the tasks' own datasets before
pretraining (a bad task stops a run at its start); :func:`evaluate_tasks` runs the tasks (a bar
each); :func:`evaluate_and_record` writes a pretrained run's ``metrics.json``, ``samples.npz`` and
``provenance.json`` and marks it finished; :func:`finished_line` is the line a user reads about it.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

from vlpbench.config.loader import RunSpec
from vlpbench.core.build import build_component
from vlpbench.core.capabilities import HasProvenance, HasStatistics, Preparable, declared, offers
from vlpbench.engine.files import read_json, write_json
from vlpbench.engine.rundir import RunDir, write_run_config
from vlpbench.core.errors import UserError, check_termination
from vlpbench.core.plugins import get_registry
from vlpbench.engine.progress import duration, task_bar
from vlpbench.engine.provenance import write_provenance
from vlpbench.engine.samples import FILE, write_samples
from vlpbench.engine.validation import ValidationSource
from vlpbench.tasks.base import Encoders



def record_metrics(run: RunDir, metrics: dict[str, Any], samples: dict[str, Any]) -> None:
    """Write ``metrics.json`` and ``samples.npz``; a task with a non-finite score fails the run (its
    other tasks' results are kept in the files)."""
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
        data_statistics=built.data_source.statistics() if offers(built.data_source, HasStatistics) else None,
        pretrain={"steps": result.steps, "resumed_from_epoch": result.resumed_from_epoch,
                  "resumed_from_step": result.resumed_from_step,
                  "stages": result.stages, "active_steps": result.active_steps},
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


def prepare_task_data(tasks: list[Any], context: Any) -> None:
    """Build every task and prepare the tasks' own datasets that can be prepared (real datasets
    check their files and build their image store) before pretraining, so that a bad task parameter,
    a missing file or a bad sample stops the run at its start, not after hours of pretraining."""
    registry = get_registry()
    for task_spec in tasks:
        build_component(registry, "task", task_spec, context)
        dataset_spec = task_spec.params().get("dataset")
        if isinstance(dataset_spec, dict):
            source = build_component(registry, "dataset", dataset_spec, context)
            if offers(source, Preparable):
                source.prepare()


def dense_stride_on_run_data(tasks: list[Any]) -> int | None:
    """The finest stride the dense tasks (those with ``min_stride``) read from the run's own data:
    the global features of those images are then computed in the same encoder pass as their maps
    (:meth:`vlpbench.tasks.base.Encoders.global_features`), and a task at a coarser stride reads the
    coarser levels of those maps (:func:`vlpbench.tasks.dense.split_feature_maps`)."""
    strides = {task.params.min_stride for task in tasks
               if isinstance(getattr(task.params, "min_stride", None), int)
               and getattr(task.params, "dataset", None) is None}
    return min(strides) if strides else None


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
    registry = get_registry()
    metrics: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    built = [build_component(registry, "task", task_spec, context) for task_spec in tasks]
    shared_stride = dense_stride_on_run_data(built)
    # the images those dense tasks read: a task with a dataset of its own shares their pass only for
    # the same arrays (SynthCXR hands out one array per split and size, e.g. the probe's train split)
    dense_images = (None if shared_stride is None or data_source is None
                    else tuple(data_source.split(name).images for name in ("train", "val", "test")))
    for index, (task_spec, task) in enumerate(zip(tasks, built)):
        key = task_spec.name if sum(t.name == task_spec.name for t in tasks) == 1 else f"{task_spec.name}#{index}"
        if encoders.text is None and "text:global" in declared(task, "requires"):
            if echo:
                echo(f"  {key}: skipped (needs a text encoder; this checkpoint has only an image encoder)")
            continue
        dataset_spec = getattr(task.params, "dataset", None)
        source = data_source if dataset_spec is None else build_component(registry, "dataset", dataset_spec, context)
        if source is not data_source and declared(data_source, "evaluation") == "validation":
            source = ValidationSource(source)
        encoders.dense_min_stride, encoders.dense_images = shared_stride, dense_images
        started = time.perf_counter()
        check_termination()
        with task_bar(key, progress):
            outcome = task.evaluate(encoders, source, device)
        metrics[key] = task_metrics(task, outcome)
        if samples is not None and not metrics[key].get("error"):
            samples[key] = outcome.samples
        if task_data is not None and source is not data_source and offers(source, HasProvenance):
            task_data[key] = source.provenance()
        seconds[key] = time.perf_counter() - started
    return metrics, seconds


def task_metrics(task: Any, outcome: Any) -> dict[str, Any]:
    """A task's entry of ``metrics.json``: scores, protocols, details, the columns it declares and
    its metric version; with an ``error`` and no scores when a score is not finite."""
    entry = {"scores": outcome.scores, "protocols": outcome.protocols, "details": outcome.details,
             "columns": {c: info.as_dict() for c, info in declared(outcome, "columns").items()},
             "metric_version": str(declared(task, "metric_version") or "") or None,
             "samples": {c: s.kind for c, s in declared(outcome, "samples").items()}}
    bad = {c: v for c, v in outcome.scores.items() if not isinstance(v, (int, float)) or not math.isfinite(v)}
    if bad:
        entry.update(scores={}, error="non-finite score(s) " + ", ".join(f"{c} = {v}" for c, v in bad.items())
                     + " (a degenerate model or a test split without both classes); the task gives no result")
    return entry


def finished_line(run: RunDir) -> str:
    """``finished in 5m40s (pretrain 2m40s, eval 3m00s): linear_probe auroc@1% 61.2 …``: a finished
    run's times and headline scores (×100, as on the board)."""
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
