"""Starting and using the process group of a multi-process run (torchrun, or Slurm tasks).

``torchrun --nproc_per_node=N -m vlpbench.cli run FILE`` (or ``torchrun ... $(which vlpbench) run``)
sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a Slurm launcher exports the same
variables. :func:`process_group` starts the group from them: NCCL when CUDA is available, gloo on
the CPU (``VLPBENCH_DIST_BACKEND`` overrides). Everything that writes files or prints runs on rank 0
(:func:`is_main`); :func:`barrier` keeps the other ranks in step with it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from typing import Iterator

from vlpbench.objective.scope import World, current_world

#: Rank 0 evaluates the downstream tasks while the others wait at a barrier: allow it time.
TIMEOUT = datetime.timedelta(hours=6)


def launched_world_size() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@contextlib.contextmanager
def process_group() -> Iterator[World]:
    """Initialise torch.distributed from the environment when WORLD_SIZE > 1 (else do nothing)."""
    if launched_world_size() == 1:
        yield World()
        return
    import torch
    import torch.distributed as dist

    backend = os.environ.get("VLPBENCH_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    started = not dist.is_initialized()
    if started:
        dist.init_process_group(backend, init_method="env://", timeout=TIMEOUT)
    try:
        yield current_world()
    finally:
        if started and dist.is_initialized():
            dist.destroy_process_group()


def is_main() -> bool:
    return current_world().rank == 0


def barrier() -> None:
    world = current_world()
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each logged value over the ranks (one all-reduce), for the loss history."""
    world = current_world()
    if not world.distributed or not values:
        return values
    import torch
    import torch.distributed as dist

    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(tensor)
    return {k: float(v) / world.size for k, v in zip(keys, tensor.tolist())}
