"""The pretraining loop: AdamW, cosine schedule with warm-up, checkpoints, exact resume.

What a GPU user expects of it (``pretrain:`` keys, :class:`~vlpbench.config.schema.PretrainConfig`):
bf16 or fp16 autocast (fp16 with a gradient scaler), gradient accumulation, gradient
checkpointing, freezing of text layers and image stages, ``channels_last``, ``torch.compile``,
checkpoints every N steps with exact mid-epoch resume, and DistributedDataParallel whose
``find_unused_parameters`` is on only where a component needs it.

Everything that watches the loop — the progress bar, the history written at each epoch end, a
sweep's report, trackers, a stop for resume tests — is a callback (:mod:`vlpbench.engine.callbacks`).

The loop never waits for the device within a step: batches come from the loader already pinned
(:mod:`vlpbench.data.pipeline`), are copied ``non_blocking`` and normalised/augmented on the
device; losses stay on the device and are read every ``log_every`` steps
(:mod:`vlpbench.engine.metrics`). On several processes (:mod:`vlpbench.engine.distributed`)
``pretrain.batch_size`` stays the *global* batch, split evenly over the processes; rank 0 writes
the checkpoints; the logged losses are means over the ranks; every collective is checked to get
tensors on the model's device.

Gradient accumulation (``accumulate: k``) splits each process's batch into k micro-batches and
steps the optimiser once per batch. The negatives of the contrastive losses are those of the
micro-batch (``accumulation: micro``, recorded in the run's config), as in MGCA-style training
with a smaller batch; stateful components (EMAs, queues, k-means) see every micro-batch.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from vlpbench.config.schema import PretrainConfig
from vlpbench.data.pipeline import PretrainData
from vlpbench.engine.callbacks import Callback, Callbacks, PartialHistory, ProgressBar, TrainState
from vlpbench.engine.checkpoint import load_latest_good, prune, rng_state, save_checkpoint, set_rng_state
from vlpbench.engine.metrics import MetricWindow, step_values
from vlpbench.engine.model import VLPModel
from vlpbench.engine.rundir import RunDir
from vlpbench.engine.schedule import StagePlan, stage_of, stage_plans
from vlpbench.core.errors import ConfigError, check_termination
from vlpbench.core.features import Batch
from vlpbench.engine.distributed import barrier, collectives_on, is_main
from vlpbench.objective.scope import current_world


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("pretrain.device = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'.")
    return torch.device(name)


@dataclass
class PretrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per step
    active_steps: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    samples_per_second: float = 0.0
    wall_seconds: float = 0.0
    resumed_from_epoch: int | None = None
    resumed_from_step: int | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)  # the schedule's stages as run


def check_options(config: PretrainConfig, device: torch.device, world_size: int) -> None:
    """Refuse settings the hardware or the batch cannot honour, before anything is built."""
    share = world_size * config.accumulate
    if config.batch_size % share:
        raise ConfigError(
            f"pretrain.batch_size = {config.batch_size} is the global batch: it must divide evenly over {world_size} "
            f"process(es) × accumulate = {config.accumulate} micro-batches; use a multiple of {share}.")
    if config.precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"pretrain.precision = 'fp16' needs a CUDA device (this run uses {device}); use 'bf16' or "
                          "'fp32' on the CPU.")


def loader_workers(config: PretrainConfig, device: torch.device) -> int:
    """``pretrain.workers``, or by default: none on the CPU (the gather is cheap next to a CPU step),
    up to 8 per process on a GPU (as many CPUs as the process may use, minus one for itself)."""
    if config.workers is not None:
        return config.workers
    if device.type != "cuda":
        return 0

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cpus - 1))


def apply_model_options(model: VLPModel, config: PretrainConfig) -> None:
    """Freezing, gradient checkpointing, channels_last and compilation, as configured."""
    encoders = {"image": model.image_encoder, "text": model.text_encoder}
    wants = [("image", "freeze_stages", config.freeze_image_stages, "pretrain.freeze_image_stages"),
             ("text", "freeze_layers", config.freeze_text_layers, "pretrain.freeze_text_layers")]
    for side, method, amount, key in wants:
        if amount:
            _require(encoders[side], method, key)(amount)
    if config.grad_checkpointing:
        for side in ("image", "text"):
            _require(encoders[side], "set_grad_checkpointing", "pretrain.grad_checkpointing")(True)
    if config.channels_last:
        model.image_encoder.to(memory_format=torch.channels_last)
        model.channels_last = True
    if config.compile:
        model.image_encoder.compile()
        model.text_encoder.compile()


def _require(encoder: torch.nn.Module, method: str, key: str) -> Callable[..., None]:
    found = getattr(encoder, method, None)
    if found is None:
        raise ConfigError(f"{key} is set, but the encoder {type(encoder).__name__} has no {method}(); leave it unset "
                          "for this encoder.")
    return found


def needs_unused_parameters(model: VLPModel, setting: bool | None, probe: Batch | None) -> bool:
    """DDP's ``find_unused_parameters``: as set, or on only where the objective needs it: when a term
    starts later in the run, or when a probe step on ``probe`` leaves a trainable parameter without
    gradient (e.g. the patch projections under a global-only loss). The probe restores the model's
    state and the RNGs, so the run is the same as without it."""
    if setting is not None:
        return setting
    if any(term.start > 0 for term in model.objective.scheduled):
        return True
    if probe is None:
        return True

    saved, rng = copy.deepcopy(model.state_dict()), rng_state()
    try:
        model.zero_grad(set_to_none=True)
        model(probe, progress=0.0).total.backward()
        unused = any(p.requires_grad and p.grad is None for p in model.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.load_state_dict(saved)
        set_rng_state(rng)
    return unused


def micro_batches(batch: Batch, parts: int) -> Iterator[Batch]:
    """``batch`` split into ``parts`` equal row blocks (gradient accumulation)."""
    if parts == 1:
        yield batch
        return
    size = len(batch) // parts
    for start in range(0, len(batch), size):
        rows = slice(start, start + size)
        extras = {k: (v[rows] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == len(batch) else v)
                  for k, v in batch.extras.items()}
        yield Batch(batch.images[rows], batch.input_ids[rows], batch.attention_mask[rows],
                    batch.sentence_index[rows], batch.labels[rows], batch.index[rows], extras=extras)


@dataclass
class _Loop:
    """The state one training run carries between steps."""

    model: VLPModel
    forward: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    scaler: Any
    config: PretrainConfig
    device: torch.device
    params: list[torch.nn.Parameter]
    plans: list[StagePlan] = field(default_factory=list)
    stage: int = 0
    wall_before: float = 0.0  # training seconds of the run before a resume (kept in the checkpoints)
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def build(cls, model: VLPModel, data: PretrainData, config: PretrainConfig, seed: int, device: torch.device,
              world: Any) -> "_Loop":
        """The model configured (options, device, DistributedDataParallel on several processes), with
        the first stage's optimiser and schedule and, for fp16, a gradient scaler."""
        check_options(config, device, world.size)
        apply_model_options(model, config)
        model.to(device)
        forward: torch.nn.Module = model
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            model.objective.use_gradient("summed")  # DDP averages gradients; gathered terms must count in full
            probe = None
            if config.find_unused_parameters is None and data.steps_per_epoch(config.batch_size):
                plan = data.plan(0, seed, config.batch_size, config.augment)
                probe = data.gather(plan, 0, config.batch_size, world).to(device)
            unused = needs_unused_parameters(model, config.find_unused_parameters, probe)
            forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                              find_unused_parameters=unused)
        params = [p for p in model.parameters() if p.requires_grad]
        plans = stage_plans(config, data.steps_per_epoch(config.batch_size))
        optimizer, schedule = plans[0].build(params)
        scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None
        return cls(model, forward, optimizer, schedule, scaler, config, device, params, plans)

    def enter_stage(self, index: int) -> None:
        """Rebuild the optimiser and schedule for stage ``index`` (fresh moments and warm-up)."""
        self.stage = index
        self.optimizer, self.schedule = self.plans[index].build(self.params)

    def autocast(self) -> Any:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.config.precision)
        return torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def step(self, batch: Batch, progress: float) -> dict[str, torch.Tensor]:
        """One optimiser step over the batch's micro-batches; the step's values, on the device."""
        parts = self.config.accumulate
        self.optimizer.zero_grad(set_to_none=True)
        summed: dict[str, torch.Tensor] = {}
        for index, micro in enumerate(micro_batches(batch, parts)):
            last = index == parts - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.forward, "no_sync") else self.forward.no_sync()
            with sync:
                with self.autocast():
                    out = self.forward(micro, progress=progress)
                loss = out.total / parts
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            for key, value in step_values(out.total, out.terms, out.stats).items():
                summed[key] = summed[key] + value.detach() / parts if key in summed else value.detach() / parts
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.schedule.step()
        return summed

    def state(self, position: dict[str, int], history: list[dict[str, float]]) -> dict[str, Any]:
        return {**position, "stage": self.stage, "wall_seconds": self.wall_before + time.perf_counter() - self.started,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "rng": rng_state(), "history": history,
                **({"scaler": self.scaler.state_dict()} if self.scaler else {})}


def pretrain(
    model: VLPModel,
    data: PretrainData,
    config: PretrainConfig,
    seed: int,
    run: RunDir,
    device: torch.device,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> PretrainResult:
    """Train ``model`` on ``data``; resume from the run's most advanced checkpoint if there is one.

    What watches the loop is a callback (:mod:`vlpbench.engine.callbacks`): the progress bar (with
    ``progress``), the loss history written at each epoch end, then ``callbacks`` in order (a
    sweep's report, trackers, a stop for resume tests).
    """
    world = current_world()
    loop = _Loop.build(model, data, config, seed, device, world)
    steps_per_epoch = data.steps_per_epoch(config.batch_size)
    total = steps_per_epoch * config.epochs
    result = PretrainResult()
    done = _resume(loop, run, result, steps_per_epoch)
    state = TrainState(run, total, config.epochs, done=done, history=result.history, main=is_main())
    hooks = Callbacks([*([ProgressBar()] if progress else []), PartialHistory(), *callbacks])
    training = _Training(loop, data, config, seed, run, device, world, hooks, state, result, MetricWindow(world),
                         steps_per_epoch, total, loader_workers(config, device))
    model.train()
    loop.started = state.started
    hooks.on_train_start(state)
    with collectives_on(device) if world.distributed else contextlib.nullcontext():
        for epoch in range(done // max(1, steps_per_epoch), config.epochs):
            training.run_epoch(epoch, resumed_at=done)
    hooks.on_train_end(state)
    return training.finish()


@dataclass
class _Training:
    """One call of :func:`pretrain`: the loop, its data, what watches it and where it stands."""

    loop: _Loop
    data: PretrainData
    config: PretrainConfig
    seed: int
    run: RunDir
    device: torch.device
    world: Any  # vlpbench.objective.scope.World
    hooks: Callbacks
    state: TrainState
    result: PretrainResult
    window: MetricWindow
    steps_per_epoch: int
    total: int
    workers: int

    def flush(self) -> None:
        """Read the device-side loss window into the history and tell the callbacks."""
        records = self.window.flush()
        self.result.history.extend(records)
        self.hooks.on_log(self.state, records)

    def run_epoch(self, epoch: int, resumed_at: int) -> None:
        """Train ``epoch`` (from the step a resumed run stopped at, if it is in this epoch), with step
        checkpoints inside it, then the epoch's checkpoint and the callbacks' epoch end."""
        loop, config, state, spe = self.loop, self.config, self.state, self.steps_per_epoch
        state.epoch = epoch
        first = resumed_at - epoch * spe if resumed_at > epoch * spe else 0
        batches = self.data.epoch_batches(epoch, self.seed, config.batch_size, config.augment, self.world,
                                          start_step=first, workers=self.workers,
                                          pin_memory=self.device.type == "cuda")
        for step_in_epoch, batch in enumerate(batches, start=first):
            step = epoch * spe + step_in_epoch
            if stage_of(loop.plans, step) != loop.stage:
                loop.enter_stage(stage_of(loop.plans, step))
            values = loop.step(batch.to(self.device), progress=step / max(1, self.total))
            self.window.add(step, epoch, loop.schedule.get_last_lr()[0], values)
            state.done, state.samples = step + 1, state.samples + len(batch) * self.world.size
            self.hooks.on_step_end(state)
            check_termination()
            if len(self.window) >= config.log_every:
                self.flush()
            if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step_in_epoch + 1 < spe:
                self.flush()
                _save(loop, self.run, "step", step + 1, epoch, self.result.history)
                self.hooks.on_checkpoint(state, "step")
        self.flush()
        _save(loop, self.run, "epoch", (epoch + 1) * spe, epoch, self.result.history)
        barrier()
        self.hooks.on_checkpoint(state, "epoch")
        losses = [r["total"] for r in self.result.history if r["epoch"] == epoch]
        self.hooks.on_epoch_end(state, epoch, sum(losses) / max(1, len(losses)))

    def finish(self) -> PretrainResult:
        """The result: timings (a resumed run's pretraining time counts in full), steps, stages."""
        result, loop = self.result, self.loop
        elapsed = time.perf_counter() - self.state.started
        result.wall_seconds = loop.wall_before + elapsed
        result.samples_per_second = self.state.samples / elapsed if elapsed > 0 and self.state.samples else 0.0
        result.steps = self.total
        result.active_steps = loop.model.objective.step_counts()
        result.stages = [{"name": p.name, "first_step": p.first_step, "steps": p.steps, "optimizer": p.optimizer,
                          "lr": p.lr, "weight_decay": p.weight_decay} for p in loop.plans]
        return result


def _resume(loop: _Loop, run: RunDir, result: PretrainResult, steps_per_epoch: int) -> int:
    """Load the most advanced usable checkpoint; the number of steps already done (0: none)."""
    found = load_latest_good(run, steps_per_epoch)  # the most advanced checkpoint that loads (a bad one falls back)
    if found is None:
        return 0
    _, state = found
    loop.model.load_state_dict(state["model"])
    if int(state.get("stage", 0)) != loop.stage:
        loop.enter_stage(int(state.get("stage", 0)))  # the optimiser of the stage the checkpoint was in
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.schedule.load_state_dict(state["schedule"])
    if loop.scaler is not None and "scaler" in state:
        loop.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    loop.wall_before = float(state.get("wall_seconds", 0.0))
    result.history = list(state["history"])
    done = int(state.get("done", (state["epoch"] + 1) * steps_per_epoch))
    if done % max(1, steps_per_epoch) == 0:
        result.resumed_from_epoch = done // max(1, steps_per_epoch)
    else:
        result.resumed_from_epoch, result.resumed_from_step = int(state["epoch"]), done
    return done


def _save(loop: _Loop, run: RunDir, kind: str, done: int, epoch: int, history: list[dict[str, float]]) -> None:
    """Write a checkpoint after ``done`` steps on rank 0 (``epoch-E.pt`` or ``step-S.pt``); keep two."""
    if not is_main():
        return
    name = f"epoch-{epoch:03d}.pt" if kind == "epoch" else f"step-{done:09d}.pt"
    save_checkpoint(run.checkpoints / name, loop.state({"epoch": epoch, "done": done}, history))
    prune(run.checkpoints, f"{kind}-*.pt", keep=2)
    if kind == "epoch":  # step checkpoints of finished epochs are behind the epoch checkpoint
        for stale in run.checkpoints.glob("step-*.pt"):
            if int(stale.stem.split("-")[1]) <= done:
                stale.unlink(missing_ok=True)
