"""Ports on a shared node: derived from the Slurm job, outside the ephemeral range, checked free.

Two jobs of one user (or of two users) often land on one node: a DDP rendezvous port or a Ray head
port that is the same for every job (``MASTER_PORT=29500``, Ray's 6379) makes the second one fail
or, worse, join the first. The ports here are

- derived from the Slurm job id (every array task has its own ``SLURM_JOB_ID``), so two jobs that
  run at the same time get different ports without talking to each other;
- inside a range below the kernel's ephemeral range (``net.ipv4.ip_local_port_range``, usually
  32768-60999), where the kernel never hands a port to an outgoing connection, so a port that was
  free a moment ago is not taken by some client in between;
- checked free by the process that binds them (:func:`first_free`), which moves on to the next
  candidate when another program already holds one.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Iterable

#: The lowest port handed out (ports below hold well-known services and Ray's default worker range).
LOWEST = 20000
#: Every job owns a block of this many consecutive ports (DDP uses the first, Ray a few).
BLOCK = 8


def ephemeral_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    """The kernel's ephemeral port range (inclusive); Linux's default when it cannot be read."""
    try:
        low, high = (int(v) for v in path.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def reserved_range(ephemeral: tuple[int, int] | None = None) -> tuple[int, int]:
    """``[start, stop)`` of the ports vlpbench derives: below the ephemeral range when there is room
    there (the usual case), else above it."""
    low, high = ephemeral or ephemeral_range()
    if low - LOWEST >= 64 * BLOCK:
        return LOWEST, low
    if 65536 - (high + 1) >= 64 * BLOCK:
        return high + 1, 65536
    return 1024, max(1024 + 64 * BLOCK, low)  # a crowded node: still outside the ephemeral range


def job_block(job_id: int, ephemeral: tuple[int, int] | None = None) -> int:
    """The first port of the job's block: the same on every node and every task of the job, and
    different for jobs whose ids are closer than the range holds blocks (thousands of jobs)."""
    start, stop = reserved_range(ephemeral)
    blocks = (stop - start) // BLOCK
    return start + (job_id % blocks) * BLOCK


def candidates(job_id: int, offset: int = 0, count: int = 64, ephemeral: tuple[int, int] | None = None) -> list[int]:
    """The job's port at ``offset`` of its block, then the same offset in the following blocks
    (wrapping around inside the range): where to look when the first is taken."""
    start, stop = reserved_range(ephemeral)
    blocks = (stop - start) // BLOCK
    first = (job_id % blocks)
    return [start + ((first + k) % blocks) * BLOCK + offset for k in range(count)]


def is_free(port: int, host: str = "") -> bool:
    """Whether a TCP listener could bind ``port`` here now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def first_free(ports: Iterable[int], host: str = "") -> int:
    """The first of ``ports`` free here; an error naming them when none is."""
    tried = []
    for port in ports:
        if is_free(port, host):
            return port
        tried.append(port)
    raise OSError(f"none of the ports {tried[:5]}{' ...' if len(tried) > 5 else ''} is free on {socket.gethostname()}")


def slurm_job_id(environ: dict[str, str] | None = None) -> int | None:
    """This Slurm job's id (an array task's own id, not the array's), or None outside Slurm."""
    value = (environ if environ is not None else os.environ).get("SLURM_JOB_ID", "")
    return int(value) if value.isdigit() else None
