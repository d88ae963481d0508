"""What a user waiting on a run sees: a bar per downstream task, a line per finished run, an ETA.

Tasks (built-in and plugins') report where they are with :func:`report`: a phase ("fraction 10%"),
and optionally how many of their units of work are done out of how many (head epochs, batches).
Outside an evaluation, or with progress off (``--quiet``), it does nothing, so a task calls it
freely. The runner opens a bar per task with :func:`task_bar`; tqdm gives the ETA once a total is
known. :class:`RunClock` estimates the time an experiment has left from the runs it has done.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from typing import Any, Iterator

_BAR: contextvars.ContextVar[Any] = contextvars.ContextVar("vlpbench_task_bar", default=None)


def report(phase: str, done: int | None = None, total: int | None = None) -> None:
    """Tell the current task's progress bar the phase and, when known, ``done`` of ``total`` units."""
    bar = _BAR.get()
    if bar is None:
        return
    if total is not None and bar.total != total:
        bar.reset(total=total)
    if done is not None:
        bar.n = done
    bar.set_postfix_str(phase, refresh=False)
    bar.refresh()


@contextlib.contextmanager
def task_bar(name: str, enabled: bool) -> Iterator[None]:
    """A progress bar for the downstream task ``name`` while the block runs (none when not ``enabled``)."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    bar = tqdm(total=None, desc=f"eval {name}", unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)
    token = _BAR.set(bar)
    try:
        yield
    finally:
        _BAR.reset(token)
        bar.close()


def duration(seconds: float) -> str:
    """``75`` → ``1m15s``; ``4000`` → ``1h07m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class RunClock:
    """The remaining time of an experiment, from the mean wall time of the runs this invocation did
    (runs it skipped cost nothing and do not count)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.seen = 0
        self.worked: list[float] = []

    def record(self, seconds: float, did_work: bool) -> None:
        self.seen += 1
        if did_work:
            self.worked.append(seconds)

    def remaining(self) -> float | None:
        """Seconds left, or ``None`` before any run did work."""
        if not self.worked:
            return None
        return sum(self.worked) / len(self.worked) * (self.total - self.seen)

    def suffix(self) -> str:
        left = self.remaining()
        return f" (about {duration(left)} left)" if left is not None and self.seen < self.total else ""
