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
from typing import TYPE_CHECKING, Any, Iterator

import torch
import torch.distributed as dist

from vlpbench.objective.scope import World, current_world

if TYPE_CHECKING:
    from torch import Tensor

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


def broadcast_flag(value: bool) -> bool:
    """Rank 0's ``value`` on every rank (one small broadcast on the collective device); ``value``
    itself on one process. It is also a synchronisation point: no rank returns before rank 0 called it."""
    world = current_world()
    if not world.distributed:
        return value

    flag = torch.tensor([1 if value else 0], dtype=torch.int32, device=collective_device())
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def all_reduce_mean(tensor: "Tensor", world: World | None = None) -> "Tensor":
    """The mean over the ranks of ``tensor``, computed where the tensor lives (NCCL needs the GPU)."""
    world = world or current_world()
    if not world.distributed:
        return tensor

    reduced = tensor.clone()
    dist.all_reduce(reduced)
    return reduced / world.size


def collective_device() -> "torch.device":
    """Where the backend's collectives expect tensors: this rank's GPU under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


_COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "broadcast", "reduce_scatter",
                "reduce_scatter_tensor", "all_to_all", "reduce")


@contextlib.contextmanager
def collectives_on(device: "torch.device") -> Iterator[None]:
    """Within the block, every ``torch.distributed`` collective must get tensors on ``device`` (the
    model's): one given a tensor elsewhere raises at once, naming the collective and both devices,
    instead of crashing (NCCL) or silently copying. The trainer runs every distributed step inside it."""
    originals = {name: getattr(dist, name) for name in _COLLECTIVES if hasattr(dist, name)}

    def guarded(name: str, original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            for value in (*args, *kwargs.values()):
                for tensor in (value if isinstance(value, (list, tuple)) else [value]):
                    if isinstance(tensor, torch.Tensor) and tensor.device != device:
                        raise RuntimeError(f"torch.distributed.{name} got a tensor on {tensor.device}, but the model "
                                           f"runs on {device}: a collective must use tensors on the model's device "
                                           "(NCCL accepts only GPU tensors). This is a bug in the component that "
                                           "called it.")
            return original(*args, **kwargs)
        return call

    for name, original in originals.items():
        setattr(dist, name, guarded(name, original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(dist, name, original)
