"""One process at a time per run directory: a lock file held with ``flock``.

``vlpbench run`` takes ``<run>/.lock`` before it touches a run. A second ``vlpbench run`` of the same
experiment (another terminal, a second Slurm submission) finds the lock held and skips that run
instead of training it a second time from scratch. The lock file records the holder's host and PID
for the message. A lock is *stale* when its holder died (kill -9, a crashed node): the kernel drops
an ``flock`` with its process, so a stale lock never blocks — the next run takes it over and says so.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

LOCK_NAME = ".lock"


class RunLock:
    """An exclusive, non-blocking lock on one run directory (released on :meth:`release` or exit)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        #: What the previous holder wrote, when it died without releasing (a stale lock taken over).
        self.stale: dict[str, Any] | None = None

    def acquire(self) -> bool:
        """Take the lock; ``False`` when another live process holds it (see :meth:`holder`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        previous = _parse(os.pread(fd, 4096, 0))
        if previous:  # a holder that released cleanly truncates the file: this one died holding it
            self.stale = previous
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}).encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return

        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str:
        """'host H, pid P' of the current holder, as far as the lock file says."""
        try:
            info = _parse(self.path.read_bytes())
        except OSError:
            info = None
        return f"host {info.get('host')}, pid {info.get('pid')}" if info else "another process"

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data.decode("utf-8")) if data.strip() else None
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
