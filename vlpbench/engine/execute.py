"""Executing one run in this process: build it, pretrain (or resume, or reuse a sibling's
pretraining, or skip it for a floor row), then score its tasks (:mod:`vlpbench.engine.scoring`).

A run goes pending → running → pretrained → finished (or failed). Every file is written
atomically, so stopping at any moment loses at most the current epoch and never corrupts a
finished result.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Sequence

import torch

from vlpbench.config.identity import pretrain_identity
from vlpbench.config.loader import RunSpec
from vlpbench.core.errors import ConfigError
from vlpbench.core.plugins import get_registry
from vlpbench.engine.callbacks import Callback, EpochEnd, LogTo
from vlpbench.engine.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vlpbench.engine.distributed import barrier, is_main, local_rank
from vlpbench.engine.files import read_json, write_json
from vlpbench.engine.model import build_run
from vlpbench.engine.pretrain import PretrainResult, resolve_device
from vlpbench.engine.reuse import copy_pretraining, find_reusable_pretraining
from vlpbench.engine.rundir import RunDir, write_run_config
from vlpbench.engine.scoring import evaluate_and_record, evaluate_tasks, prepare_task_data
from vlpbench.engine.tracking import Tracking
from vlpbench.engine.validation import ValidationSource
from vlpbench.tasks.base import Encoders



EpochHook = Callable[[int, float, Callable[[], dict[str, Any]]], None]


def execute_run(spec: RunSpec, run: RunDir, progress: bool = True, reuse_pretraining: bool = True,
                on_epoch_end: EpochHook | None = None, report_to: list[str] | tuple[str, ...] = (),
                callbacks: Sequence[Callback] = ()) -> None:
    """Pretrain (or resume) one run and evaluate its tasks; write every result file.

    With ``reuse_pretraining``, a finished sibling run that differs only in its tasks lends its
    pretraining (see :mod:`vlpbench.engine.reuse`). On several processes every rank pretrains;
    rank 0 alone writes files and evaluates the tasks while the others wait.

    A run whose spec has ``evaluation == "validation"`` (sweep trials) scores its tasks on the
    validation split (see :mod:`vlpbench.engine.validation`); its protocols say so.
    ``on_epoch_end(epoch, mean epoch loss, evaluate)`` is called after every epoch's checkpoint;
    ``evaluate()`` scores the tasks on the current model (in the run's evaluation mode) and leaves
    the model and the RNG states as they were. ``report_to`` names experiment trackers
    (:mod:`vlpbench.engine.tracking`) that rank 0 logs the run to while it trains. ``callbacks``
    go to the training loop after those (:mod:`vlpbench.engine.callbacks`; e.g. ``StopAfter``).
    """
    if report_to and is_main():
        tracking = Tracking(report_to, spec, run.path.parent.parent)
        state = "failed"
        try:
            _execute_run(spec, run, progress, reuse_pretraining, [LogTo(tracking.log_history), *callbacks],
                         on_epoch_end)
            tracking.log_results(read_json(run.file("metrics.json")),
                                 read_json(run.file("provenance.json")).get("timings", {}))
            state = "finished"
        finally:
            tracking.finish(state)
    else:
        _execute_run(spec, run, progress, reuse_pretraining, list(callbacks), on_epoch_end)


def _epoch_report(on_epoch_end: EpochHook, built: Any, config: Any, device: Any) -> Callback:
    """``on_epoch_end(epoch, loss, evaluate)`` as a training-loop callback; ``evaluate()`` scores the
    tasks on the current weights and leaves the RNG states as they were."""
    def evaluate_now() -> dict[str, Any]:
        saved = rng_state()
        encoders = Encoders(built.model.image_encoder, built.model.text_encoder, precision=config.pretrain.precision)
        try:  # fresh Encoders: features shared between tasks must not outlive this epoch's weights
            return evaluate_tasks(config.tasks, encoders, built.data_source, built.context, device)[0]
        finally:
            encoders.close()
            set_rng_state(saved)

    return EpochEnd(lambda epoch, loss: on_epoch_end(epoch, loss, evaluate_now))


def _execute_run(spec: RunSpec, run: RunDir, progress: bool, reuse_pretraining: bool, callbacks: list[Callback],
                 on_epoch_end: EpochHook | None) -> None:
    """Build the run's components on its device, pretrain it (or load its pretraining) and evaluate
    it on rank 0; every rank takes part in pretraining, the others wait for the evaluation."""
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
        built.data_source = ValidationSource(built.data_source)
    if main:
        prepare_task_data(config.tasks, built.context)
    unstarted = main and run.status().get("state") != "pretrained" and run.latest_epoch_checkpoint() is None
    if unstarted and reuse_pretraining and floor is None:
        reuse_finished_pretraining(spec, run)
    barrier()
    if on_epoch_end is not None:
        callbacks = [_epoch_report(on_epoch_end, built, config, device), *callbacks]
    result = _pretrained(spec, run, built, config, device, progress, callbacks, started)
    try:
        if main:
            evaluate_and_record(spec, run, built, result, device, progress=progress)
    finally:
        barrier()  # the other ranks wait for rank 0's evaluation (also when it fails)


def _pretrained(spec: RunSpec, run: RunDir, built: Any, config: Any, device: Any, progress: bool,
                callbacks: list[Callback], started: float) -> Any:
    """The run's :class:`~vlpbench.engine.pretrain.PretrainResult`, the model left pretrained: from
    the final checkpoint of a pretrained run, or by pretraining (none for a floor row); rank 0 then
    writes ``history.json`` and the final checkpoint and marks the run ``pretrained``."""
    from vlpbench.engine.pretrain import pretrain  # looked up per call: tests replace it

    final = _load_final(run)
    if final is not None:
        built.model.load_state_dict(final[0])
        return final[1]
    main, floor = is_main(), config.floor
    if main:
        run.set_status("running", started=started)
    if floor is not None:
        result = PretrainResult()  # no pretraining: not one optimiser step
    else:
        result = pretrain(built.model, built.pretrain, config.pretrain, spec.seed, run, device,
                          progress=progress, callbacks=callbacks)
    if main:
        epochs = 0 if floor is not None else config.pretrain.epochs
        write_json(run.file("history.json"), {"steps": result.history, "active_steps": result.active_steps,
                                              "total_steps": result.steps, "epochs": epochs,
                                              "epochs_done": epochs, "complete": True,
                                              **({"floor": floor} if floor is not None else {})})
        save_checkpoint(run.final_checkpoint, {"model": built.model.state_dict(), "result": result.__dict__})
        run.set_status("pretrained")
    return result


def _load_final(run: RunDir) -> tuple[dict[str, Any], Any] | None:
    """The final checkpoint's model state and :class:`PretrainResult` of a pretrained run, or ``None``
    (with a warning naming the file) when it is missing or unreadable: the run then pretrains again
    from its last good epoch checkpoint."""
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
        raise ConfigError(
            f"pretraining would take 0 steps: pretrain.batch_size = {config.pretrain.batch_size} is larger than the "
            f"{len(built.pretrain)} pretraining samples (each epoch uses only whole batches). Use a batch size of at "
            "most the pretraining split's size, or more pretraining data.")


def reuse_finished_pretraining(spec: RunSpec, run: RunDir) -> None:
    """Copy a finished sibling's pretraining into ``run`` when only the tasks differ."""
    source = find_reusable_pretraining(run, pretrain_identity(spec.config, spec.seed, spec.protocol_versions,
                                                                 spec.world_size))
    if source is not None:
        copy_pretraining(source, run)
        run.set_status("pretrained", pretraining_reused_from=source.path.name)
