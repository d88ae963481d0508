"""Keep a job's main thread free for signal handlers while long native work runs.

Python runs a signal handler on the main thread, between two bytecodes. A Slurm job's requeue
signal is handled by submitit on the main thread (checkpoint, ``scontrol requeue``, exit), so the
handler waits for whatever native call the main thread is in. The Ray Tune driver is such a case:
a preemption starts with a TERM to every process of the job step, Ray's GCS server among them, and
the driver's next Ray call then blocks in C++ for a minute trying to reconnect before it aborts the
process; the requeue signal, sent a few seconds after the TERM, is never handled and the job fails
instead of being requeued. Ray Tune also takes SIGUSR1 for itself when it runs on the main thread,
which would steal a ``launcher.signal: USR1``.

:func:`call_responsively` runs the work on a worker thread and has the main thread wait in short
joins, so a handler runs within a fraction of a second whatever the worker is doing.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")

#: How long the main thread waits in one join before it checks for signals again (seconds).
POLL_S = 0.2


def call_responsively(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` on a daemon worker thread; return its value or raise its
    exception on the calling (main) thread. A signal handler that raises or exits on the main
    thread (submitit's requeue handler calls ``sys.exit``) ends the wait at once; the worker, a
    daemon, does not hold the process up."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # re-raised on the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"vlpbench-{getattr(function, '__name__', 'work')}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(POLL_S)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
