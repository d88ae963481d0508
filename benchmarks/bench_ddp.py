"""Prints the multi-process figures (issue 8): pretraining throughput of 1 vs 2 CPU processes at the
same global batch, and the communication share of a two-process step. A benchmark, not a test.

    .venv/bin/python benchmarks/bench_ddp.py [--steps 20] [--batch 64] [--scope gathered]

The model is the default ablation's (ResNet-18 at 64 px, 2-layer BERT) with the CLIP objective.
Communication share: a DDP step times the gradient all-reduce (and, with ``--scope gathered``, the
feature all-gathers); the same step under ``no_sync()`` skips the all-reduce. Share =
(t_step − t_no_sync) / t_step, the all-gathers not included (they are tiny: B×D floats).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

CONFIG = {
    "data": {"name": "synthcxr", "image_size": 64, "pretrain_size": 2000, "train_size": 16, "val_size": 16,
             "test_size": 16},
    "model": {"image_encoder": {"name": "timm", "arch": "resnet18"},
              "text_encoder": {"name": "bert", "layers": 2, "hidden": 128}, "embed_dim": 128},
    "objective": {"global": {"name": "infonce"}},
    "pretrain": {"batch_size": 64, "augment": True},
}


def _build(scope: str, batch: int):  # type: ignore[no-untyped-def]
    from vlpbench.config.schema import RunConfig
    from vlpbench.engine.model import build_run
    from vlpbench.core.plugins import get_registry

    config = {**CONFIG, "objective": {**CONFIG["objective"], "negative_scope": scope},
              "pretrain": {**CONFIG["pretrain"], "batch_size": batch}}
    return build_run(RunConfig.model_validate(config), get_registry(), seed=0)


def _timed_steps(forward, model, batches, steps: int, sync: bool) -> float:  # type: ignore[no-untyped-def]
    import contextlib

    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    started = time.perf_counter()
    for step in range(steps):
        batch = batches[step % len(batches)]
        context = contextlib.nullcontext() if sync or not hasattr(forward, "no_sync") else forward.no_sync()
        with context:
            out = forward(batch, progress=0.5)
            optimizer.zero_grad(set_to_none=True)
            out.total.backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps


def _worker(rank: int, world: int, rendezvous: str, args: argparse.Namespace, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from vlpbench.objective.scope import World

    torch.set_num_threads(args.threads_per_process)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    built = _build(args.scope, args.batch)
    model, forward = built.model, built.model
    model.train()
    if world > 1:
        model.objective.gradient = "summed"
        forward = DistributedDataParallel(model, find_unused_parameters=True)
    batches = list(built.pretrain.epoch_batches(0, 0, args.batch, True, World(rank, world)))[:args.steps]
    _timed_steps(forward, model, batches, 3, sync=True)  # warm-up
    step = _timed_steps(forward, model, batches, args.steps, sync=True)
    no_sync = _timed_steps(forward, model, batches, args.steps, sync=False) if world > 1 else step
    Path(out, f"rank{rank}.txt").write_text(f"{step} {no_sync}")
    if world > 1:
        dist.destroy_process_group()


def measure(world: int, args: argparse.Namespace) -> tuple[float, float]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(_worker, args=(world, str(Path(folder) / "rendezvous"), args, folder), nprocs=world,
                           join=True, start_method="spawn")
        times = [tuple(map(float, Path(folder, f"rank{r}.txt").read_text().split())) for r in range(world)]
    return max(t[0] for t in times), max(t[1] for t in times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--scope", default="gathered", choices=["local", "gathered"])
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"global batch {args.batch}, {args.steps} steps, scope {args.scope}, {cores} CPU cores")
    args.threads_per_process = cores
    single, _ = measure(1, args)
    print(f"1 process  ({cores} threads)   : {args.batch / single:7.1f} samples/s ({single * 1000:.0f} ms/step)")
    args.threads_per_process = max(1, cores // 2)
    step, no_sync = measure(2, args)
    print(f"2 processes ({args.threads_per_process} thread each): {args.batch / step:7.1f} samples/s "
          f"({step * 1000:.0f} ms/step; {no_sync * 1000:.0f} ms without the gradient all-reduce)")
    print(f"communication share of a 2-process step: {max(0.0, step - no_sync) / step:.0%}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
