"""The sweep driver's main thread stays free for the requeue signal while native code runs."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from typing import Callable

import pytest

from vlpbench.launchers.responsive import call_responsively


def _native_work() -> float:
    """A second or more of work inside one C call that does not return to the interpreter (PBKDF2
    releases the GIL, as Ray's C++ core does while it waits for its GCS server); returns when it ended."""
    hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 3_000_000)
    return time.monotonic()


def _signal_times(call: Callable[[], float]) -> tuple[float, float]:
    """Send this process SIGUSR1 shortly after ``call`` starts; return (handler ran, work ended)."""
    handled: list[float] = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: handled.append(time.monotonic()))
    try:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        ended = call()
        deadline = time.monotonic() + 5
        while not handled and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert handled, "the handler never ran"
    return handled[0], ended


def test_a_signal_is_handled_while_the_work_is_still_in_native_code() -> None:
    handled, ended = _signal_times(lambda: call_responsively(_native_work))
    assert handled < ended - 0.3, f"the handler ran {ended - handled:.2f} s before the work ended"


def test_without_it_the_handler_waits_for_the_native_call() -> None:
    """The control: on the main thread the same handler runs only once the C call returns (just
    before the work reads the clock)."""
    handled, ended = _signal_times(_native_work)
    assert handled > ended - 0.05, f"the handler ran {ended - handled:.2f} s before the work ended"


def test_an_exiting_handler_ends_the_wait_at_once() -> None:
    """submitit's requeue handler ends with ``sys.exit``: the caller sees SystemExit long before
    the worker is done."""
    def exit_now(*_: object) -> None:
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR1, exit_now)
    try:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        started = time.monotonic()
        with pytest.raises(SystemExit):
            call_responsively(time.sleep, 30)
        assert time.monotonic() - started < 5
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_value_and_errors_come_back_to_the_caller() -> None:
    assert call_responsively(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(ValueError, match="bad sweep"):
        call_responsively(lambda: (_ for _ in ()).throw(ValueError("bad sweep")))
