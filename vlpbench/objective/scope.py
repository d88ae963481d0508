"""Negative scope: which batch a component compares across when several processes train together.

With data-parallel training each process holds a *local* batch of B samples. A component that
compares samples with each other (the global loss, a positive miner, a negative weighting, a head
with batch negatives, the k-means of cluster-guided negatives) can either

- ``local``: compare within its own process's batch (MGCA, FaNe: the negatives depend on the
  number of processes), or
- ``gathered``: compare across the batches of every process (CM-CGNS's global InfoNCE): the
  features are all-gathered, the process's own rows keep their gradient, and every process
  computes the same loss over the W·B samples — the loss a single process with batch W·B computes.

Gradients (the ``gradient`` argument of :func:`gather_rows`): with ``own`` the gathered rows of the
other processes are constants and this process's rows get exactly the single-process gradient of
the gathered loss (the way open_clip gathers). DistributedDataParallel then *averages* parameter
gradients over the W processes, which would scale every gathered term by 1/W against the local
terms. Training therefore uses ``summed``: the own rows' gradient is multiplied by W (the sum of
the identical gradients every process computes for them, as ``torch.distributed.nn.all_gather``
gives), so that after DDP's average every parameter gradient equals the single-process one.

With one process both scopes are the same computation, and nothing is gathered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor

Scope = Literal["local", "gathered"]
GradientMode = Literal["own", "summed"]
SCOPES: tuple[str, ...] = ("local", "gathered")


@dataclass(frozen=True)
class World:
    """This process's place among the processes that train together."""

    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """The initialised ``torch.distributed`` process group, or a world of one process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def _row_counts(x: Tensor, world: World) -> list[int]:
    count = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world.size)]
    dist.all_gather(counts, count)
    return [int(c) for c in counts]


def _all_gather_padded(x: Tensor, counts: list[int]) -> Tensor:
    """All-gather row blocks of possibly different lengths (padded to the longest, then trimmed)."""
    longest = max(counts)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    blocks = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(blocks, padded.contiguous())
    return torch.cat([block[:count] for block, count in zip(blocks, counts)])


class _GatherRows(torch.autograd.Function):
    """All-gather of row blocks; the backward returns (a multiple of) this process's rows' gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, rank: int, counts: tuple[int, ...], scale: float) -> Tensor:  # type: ignore[override]
        ctx.start, ctx.rows, ctx.scale = sum(counts[:rank]), counts[rank], scale
        return _all_gather_padded(x.detach(), list(counts))

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad[ctx.start:ctx.start + ctx.rows] * ctx.scale, None, None, None


def gather_rows(x: Tensor, gradient: GradientMode | str = "own", world: World | None = None) -> Tensor:
    """[n_r, ...] on each process → [Σ n_r, ...] in rank order; differentiable for this process's rows.

    Processes may hold different numbers of rows (e.g. the sentences of their reports).
    """
    world = world or current_world()
    if not world.distributed:
        return x
    if not x.requires_grad:
        return gather_constant(x, world)
    counts = tuple(_row_counts(x, world))
    return _GatherRows.apply(x, world.rank, counts, float(world.size) if gradient == "summed" else 1.0)


@torch.no_grad()
def gather_constant(x: Tensor, world: World | None = None) -> Tensor:
    """All-gather without gradient (indices, labels, targets)."""
    world = world or current_world()
    if not world.distributed:
        return x
    return _all_gather_padded(x, _row_counts(x, world))


def own_rows(world: World, rows: int) -> slice:
    """The rows of this process inside a gathered [W·B, ...] tensor."""
    return slice(world.rank * rows, (world.rank + 1) * rows)


def block_diagonal(blocks: Tensor, off_block: float) -> Tensor:
    """[W, B, B] per-process matrices → one [W·B, W·B] matrix with ``off_block`` between processes."""
    size, rows = blocks.shape[0], blocks.shape[1]
    full = torch.full((size * rows, size * rows), off_block, dtype=blocks.dtype, device=blocks.device)
    index = torch.arange(size * rows, device=blocks.device).view(size, rows)
    full[index.unsqueeze(2), index.unsqueeze(1)] = blocks
    return full
