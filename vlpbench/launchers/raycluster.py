"""The Ray cluster a sweep runs on: its own, never someone else's, and stopped when the sweep ends.

``ray.init()`` with no address first connects to ``RAY_ADDRESS`` and then to the cluster last
started on the machine (``/tmp/ray/ray_current_cluster``), which on a shared node is often another
user's or another job's; ``ray stop`` stops every Ray process of the user on the node, other jobs'
included. So:

- one node (a local sweep, or a Slurm job on one node): :func:`local_cluster` starts a cluster with
  ``ray.init(address="local")`` (it never reads ``RAY_ADDRESS`` nor the last-cluster file), in a temp
  directory of its own (named after the Slurm job, or fresh), with every port chosen free by the
  system, and shuts exactly that cluster down afterwards;
- a cluster the user names (``vlpbench sweep --address HOST:PORT``): :func:`joined_cluster` connects
  and only disconnects at the end;
- several nodes (a Slurm allocation): :func:`multinode_cluster` starts the head on the first node and
  one worker per other node with ``srun``, each ``ray start --block`` with its own temp directory,
  the head's port derived from the job (:mod:`vlpbench.launchers.ports`) and the other ports chosen
  free, and stops them by terminating those processes (never ``ray stop``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from vlpbench.core.errors import UserError
from vlpbench.launchers.ports import candidates, first_free, slurm_job_id

#: Unix socket paths under Ray's temp dir must stay short (about 107 bytes), so the dir is short too.
_MAX_TEMP_PREFIX = 40


def temp_dir(job_id: int | None = None, node: str = "", create: bool = True) -> Path:
    """Ray's temp directory for this sweep: ``vlpbench-ray-<job>[-<node>]`` for a Slurm job (a
    requeued job reuses it), a fresh ``vlpbench-ray-XXXX`` otherwise; under ``$TMPDIR`` when that is
    short, else ``/tmp``."""
    base = tempfile.gettempdir()
    if len(base) > _MAX_TEMP_PREFIX:
        base = "/tmp"
    if job_id is None:
        return Path(tempfile.mkdtemp(prefix="vlpbench-ray-", dir=base))
    path = Path(base) / (f"vlpbench-ray-{job_id}" + (f"-{node}" if node else ""))
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _require_token_auth_mode() -> None:
    """Ray's token authentication for the clusters started here (their processes and this driver
    read ``RAY_AUTH_MODE``); a mode the user set is kept."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")


@contextlib.contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """``ray.init`` replaces the driver's SIGTERM handler with one that exits; in a Slurm job that
    would end the driver at the TERM a preemption starts with, before the requeue signal comes
    (submitit logs and ignores TERM). Keep the handler the process had."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def local_cluster(num_cpus: int, echo: Callable[[str], None] = print) -> Iterator[str]:
    """Start a Ray cluster of this process on this node; yield its GCS address; shut it down."""
    import ray

    folder = temp_dir(slurm_job_id())
    with _keep_sigterm_handler():
        context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                           _node_ip_address="127.0.0.1", _temp_dir=str(folder), configure_logging=False,
                           log_to_driver=False)
    address = context.address_info.get("gcs_address", "?")
    echo(f"Ray: started a local cluster at {address} ({num_cpus} CPU(s), temp dir {folder})")
    try:
        yield address
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def joined_cluster(address: str, echo: Callable[[str], None] = print) -> Iterator[str]:
    """Connect to the cluster at ``address`` (the user named it); disconnect at the end."""
    import ray

    host, _, port = address.rpartition(":")
    if host and port.isdigit():  # Ray would retry an address where nothing listens for minutes
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as exc:
            raise UserError(f"--address {address}: no Ray cluster to join there ({exc.strerror or exc}). Start one "
                            "with `ray start --head`, or leave --address out and the sweep starts its own.") from None
    try:
        with _keep_sigterm_handler():
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, ValueError) as exc:
        raise UserError(f"--address {address}: no Ray cluster to join there ({exc}). Start one with `ray start "
                        "--head`, or leave --address out and the sweep starts its own.") from None
    echo(f"Ray: joined the cluster at {address}")
    try:
        yield address
    finally:
        ray.shutdown()


def head_command(head_ip: str, port: int, cpus: int, gpus: int, folder: Path, ray: str = "ray") -> list[str]:
    """``ray start`` of the head: the GCS on ``port``, every other port chosen free by the system
    (``0``), its own temp dir, blocking (so terminating it stops the head)."""
    return [ray, "start", "--head", "--block", f"--node-ip-address={head_ip}", f"--port={port}",
            f"--num-cpus={cpus}", f"--num-gpus={gpus}", "--include-dashboard=false", "--disable-usage-stats",
            "--min-worker-port=0", "--max-worker-port=0", "--dashboard-agent-listen-port=0", f"--temp-dir={folder}"]


def worker_command(nodes: list[str], head: str, cpus: int, gpus: int, folder: Path, ray: str = "ray") -> list[str]:
    """``srun`` starting one blocking ``ray start`` per node in ``nodes``, joining ``head``."""
    return ["srun", f"--nodes={len(nodes)}", f"--ntasks={len(nodes)}", "--ntasks-per-node=1",
            f"--nodelist={','.join(nodes)}", f"--cpus-per-task={cpus}", "--overlap", "--kill-on-bad-exit=1",
            ray, "start", "--block", f"--address={head}", f"--num-cpus={cpus}", f"--num-gpus={gpus}",
            "--disable-usage-stats", "--min-worker-port=0", "--max-worker-port=0", "--dashboard-agent-listen-port=0",
            f"--temp-dir={folder}"]


def head_port(job_id: int | None, configured: int | None, host: str = "") -> int:
    """The head's GCS port: ``launcher.ray_port`` when set (it must be free), else the job's port
    (the second of its block, the first being DDP's), or the next free one."""
    if configured:
        return first_free([configured], host)
    return first_free(candidates(job_id if job_id is not None else os.getpid(), offset=1), host)


def _wait_for_port(host: str, port: int, process: subprocess.Popen, limit: float = 120.0) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        if process.poll() is not None:
            raise UserError(f"the Ray head exited (code {process.returncode}) before listening on {host}:{port}; "
                            "see the job's log")
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.5)
    raise UserError(f"the Ray head did not listen on {host}:{port} within {limit:.0f} s; see the job's log")


def _stop(process: Any, what: str, echo: Callable[[str], None]) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()  # `ray start --block` stops the processes it started on SIGTERM
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
    echo(f"Ray: stopped the {what}")


def _popen(command: list[str]) -> Any:
    return subprocess.Popen(command)


@contextlib.contextmanager
def multinode_cluster(nodes: list[str], head_ip: str, cpus: int, gpus: int, configured_port: int | None = None,
                      ray: str = "ray", echo: Callable[[str], None] = print) -> Iterator[str]:
    """Start Ray across the allocation (head here, workers on ``nodes[1:]``); yield the head's
    address; stop both."""
    _require_token_auth_mode()
    job = slurm_job_id()
    port = head_port(job, configured_port)
    folder = temp_dir(job if job is not None else os.getpid(), "head")
    head = head_command(head_ip, port, cpus, gpus, folder, ray)
    echo("Ray: starting the head: " + " ".join(head))
    head_process = _popen(head)
    workers_process = None
    try:
        _wait_for_port(head_ip, port, head_process)
        if nodes[1:]:
            workers = worker_command(nodes[1:], f"{head_ip}:{port}", cpus, gpus,
                                     temp_dir(job if job is not None else os.getpid(), "worker", create=False), ray)  # made there by Ray
            echo("Ray: starting the workers: " + " ".join(workers))
            workers_process = _popen(workers)
        yield f"{head_ip}:{port}"
    finally:
        _stop(workers_process, "workers", echo)
        _stop(head_process, "head", echo)
        shutil.rmtree(folder, ignore_errors=True)
