"""The pretraining loop: AdamW, cosine schedule with warm-up, per-epoch checkpoints, resume.

On several processes (see :mod:`vlpbench.engine.distributed`) the model is wrapped in
DistributedDataParallel; ``pretrain.batch_size`` stays the *global* batch, split evenly over the
processes, so a run's steps and samples per epoch do not depend on the number of processes. Rank 0
writes the checkpoints; the logged losses are means over the ranks.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from vlpbench.config.schema import PretrainConfig
from vlpbench.engine.checkpoint import load_latest_good, prune, rng_state, save_checkpoint, set_rng_state
from vlpbench.engine.model import VLPModel
from vlpbench.engine.rundir import RunDir
from vlpbench.data.pipeline import PretrainTensors


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from vlpbench.errors import ConfigError

        raise ConfigError("pretrain.device = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'.")
    return torch.device(name)


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


@dataclass
class PretrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per step
    active_steps: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    samples_per_second: float = 0.0
    wall_seconds: float = 0.0
    resumed_from_epoch: int | None = None


class Interrupt(Exception):
    """Raised by a test hook to simulate a run killed after an epoch."""


def pretrain(
    model: VLPModel,
    data: PretrainTensors,
    config: PretrainConfig,
    seed: int,
    run: RunDir,
    device: torch.device,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    on_epoch_end: Callable[[int, float], None] | None = None,
) -> PretrainResult:
    """Train ``model`` on ``data``; resume from the run's last epoch checkpoint if there is one.

    ``on_epoch_end(epoch, mean loss of the epoch)`` is called after each epoch's checkpoint is
    written (sweeps report to Ray Tune from it); it must leave the model and the RNGs as it found
    them. Without it the loop is unchanged.
    """
    from vlpbench.engine.distributed import barrier, is_main, mean_over_ranks
    from vlpbench.objective.scope import current_world

    world = current_world()
    if config.batch_size % world.size:
        from vlpbench.errors import ConfigError

        raise ConfigError(f"pretrain.batch_size = {config.batch_size} is the global batch and must divide evenly over "
                          f"the {world.size} processes; use a multiple of {world.size}.")
    model.to(device)
    forward = model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        model.objective.gradient = "summed"  # DDP averages gradients; gathered terms must count in full
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = data.steps_per_epoch(config.batch_size)
    total = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(int(config.warmup * total), total))
    result = PretrainResult()
    start_epoch = 0
    found = load_latest_good(run)  # the newest epoch checkpoint that loads (a bad one falls back)
    if found is not None:
        _, state = found
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"])
        result.history = state["history"]
        start_epoch = result.resumed_from_epoch = state["epoch"] + 1

    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if config.precision == "bf16"
                else contextlib.nullcontext())
    bar = _progress_bar(total, start_epoch * steps_per_epoch, progress and is_main())
    model.train()
    started, samples = time.perf_counter(), 0
    for epoch in range(start_epoch, config.epochs):
        for step_in_epoch, batch in enumerate(data.epoch_batches(epoch, seed, config.batch_size, config.augment, world)):
            step = epoch * steps_per_epoch + step_in_epoch
            batch = batch.to(device)
            with autocast:
                out = forward(batch, progress=step / max(1, total))
            optimizer.zero_grad(set_to_none=True)
            out.total.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            schedule.step()
            values = {"total": float(out.total.detach()), **{k: float(v.detach()) for k, v in out.terms.items()},
                      **{f"stats/{k}": v for k, v in out.stats.items()}}
            record = {"step": step, "epoch": epoch, "lr": schedule.get_last_lr()[0], **mean_over_ranks(values)}
            if not math.isfinite(record["total"]):
                from vlpbench.errors import UserError

                raise UserError(f"pretraining diverged at step {step} (loss {record['total']}); lower pretrain.lr or set pretrain.grad_clip.")
            result.history.append(record)
            samples += len(batch) * world.size
            if bar is not None:
                bar.update(1)
                if step % config.log_every == 0:
                    bar.set_postfix(loss=f"{record['total']:.3f}", sps=f"{samples / (time.perf_counter() - started):.0f}")
        if is_main():
            save_checkpoint(run.checkpoints / f"epoch-{epoch:03d}.pt", {
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "rng": rng_state(), "history": result.history,
            })
            prune(run.checkpoints, "epoch-*.pt", keep=2)
        barrier()
        if on_epoch_end is not None:
            losses = [r["total"] for r in result.history if r["epoch"] == epoch]
            on_epoch_end(epoch, sum(losses) / max(1, len(losses)))
        if stop_after_epoch is not None and epoch == stop_after_epoch:
            raise Interrupt(f"stopped after epoch {epoch}")
    if bar is not None:
        bar.close()
    result.wall_seconds = time.perf_counter() - started
    result.samples_per_second = samples / result.wall_seconds if result.wall_seconds > 0 and samples else 0.0
    result.steps = total
    result.active_steps = dict(model.objective.active_steps)
    return result


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="pretrain", unit="step", file=sys.stderr,
                dynamic_ncols=True, leave=False)
