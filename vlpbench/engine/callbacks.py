"""Hooks into the training loop (:func:`vlpbench.engine.pretrain.pretrain`).

The loop itself only trains, checkpoints and resumes; everything that watches it is a
:class:`Callback`, called on every process in the order given: the progress bar
(:class:`ProgressBar`), the loss history written at each epoch end (:class:`PartialHistory`), a
sweep's report to Ray Tune (:class:`EpochEnd`), experiment trackers (:class:`LogTo`), and a stop
at a chosen step or epoch (:class:`StopAfter`, for resume tests and benchmarks). A callback
that writes files does so on rank 0 only.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from tqdm import tqdm
from vlpbench.engine.files import write_json

if TYPE_CHECKING:
    from vlpbench.engine.rundir import RunDir


class Interrupt(Exception):
    """Raised by :class:`StopAfter` after the checkpoint it waits for (tests of resume)."""


@dataclass
class TrainState:
    """Where the loop is, for the callbacks: ``done`` optimiser steps of ``total``, the ``history``
    read from the device so far, ``samples`` seen by all processes since the start (or resume)."""

    run: "RunDir"
    total: int
    epochs: int
    done: int = 0
    epoch: int = 0
    samples: int = 0
    started: float = field(default_factory=time.perf_counter)
    history: list[dict[str, float]] = field(default_factory=list)
    main: bool = True

    def samples_per_second(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.samples / elapsed if elapsed > 0 else 0.0


class Callback:
    """A hook into the training loop; override what you need (every method does nothing here)."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first step (after a resume: with ``state.done`` the steps already done)."""

    def on_step_end(self, state: TrainState) -> None:
        """After each optimiser step."""

    def on_log(self, state: TrainState, records: list[dict[str, Any]]) -> None:
        """After a window of history records was read from the device (every ``log_every`` steps)."""

    def on_checkpoint(self, state: TrainState, kind: str) -> None:
        """After a checkpoint (``kind``: ``step`` or ``epoch``) was written, ``state.done`` steps in."""

    def on_epoch_end(self, state: TrainState, epoch: int, loss: float) -> None:
        """After ``epoch``'s checkpoint, with the epoch's mean loss; must leave model and RNGs as found."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last epoch (not after an interruption)."""


class Callbacks(Callback):
    """Several callbacks called in order, as one."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, state: TrainState) -> None:
        for callback in self.callbacks:
            callback.on_train_start(state)

    def on_step_end(self, state: TrainState) -> None:
        for callback in self.callbacks:
            callback.on_step_end(state)

    def on_log(self, state: TrainState, records: list[dict[str, Any]]) -> None:
        for callback in self.callbacks:
            callback.on_log(state, records)

    def on_checkpoint(self, state: TrainState, kind: str) -> None:
        for callback in self.callbacks:
            callback.on_checkpoint(state, kind)

    def on_epoch_end(self, state: TrainState, epoch: int, loss: float) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(state, epoch, loss)

    def on_train_end(self, state: TrainState) -> None:
        for callback in self.callbacks:
            callback.on_train_end(state)


class ProgressBar(Callback):
    """The ``pretrain`` bar on stderr (rank 0): steps, the latest loss and samples per second."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_start(self, state: TrainState) -> None:
        if not state.main or state.total == 0:
            return

        self.bar = tqdm(total=state.total, initial=state.done, desc="pretrain", unit="step", file=sys.stderr,
                        dynamic_ncols=True, leave=False)

    def on_step_end(self, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_log(self, state: TrainState, records: list[dict[str, Any]]) -> None:
        if self.bar is not None and records:
            self.bar.set_postfix(loss=f"{records[-1]['total']:.3f}", sps=f"{state.samples_per_second():.0f}")

    def on_train_end(self, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.close()


class PartialHistory(Callback):
    """``history.json`` as of each epoch's end (rank 0), so a run can be watched while it trains;
    ``complete: false`` until the runner writes the finished run's history over it."""

    def on_epoch_end(self, state: TrainState, epoch: int, loss: float) -> None:
        if state.main:
            write_json(state.run.file("history.json"), {"steps": state.history, "epochs_done": epoch + 1,
                                                        "epochs": state.epochs, "total_steps": state.total,
                                                        "complete": False})


class EpochEnd(Callback):
    """``hook(epoch, mean loss of the epoch)`` after each epoch (a sweep reports to Ray Tune here)."""

    def __init__(self, hook: Callable[[int, float], None]) -> None:
        self.hook = hook

    def on_epoch_end(self, state: TrainState, epoch: int, loss: float) -> None:
        self.hook(epoch, loss)


class LogTo(Callback):
    """``sink(records)`` for each window of history records (experiment trackers)."""

    def __init__(self, sink: Callable[[list[dict[str, Any]]], None]) -> None:
        self.sink = sink

    def on_log(self, state: TrainState, records: list[dict[str, Any]]) -> None:
        if records:
            self.sink(records)


class StopAfter(Callback):
    """Raise :class:`Interrupt` after the checkpoint of (global) step ``step`` or of epoch ``epoch``,
    as a kill at that point would leave the run (tests of resume, benchmarks)."""

    def __init__(self, step: int | None = None, epoch: int | None = None) -> None:
        self.step, self.epoch = step, epoch

    def on_checkpoint(self, state: TrainState, kind: str) -> None:
        if kind == "step" and self.step is not None and state.done >= self.step:
            raise Interrupt(f"stopped after step {state.done}")

    def on_epoch_end(self, state: TrainState, epoch: int, loss: float) -> None:
        if self.epoch is not None and epoch == self.epoch:
            raise Interrupt(f"stopped after epoch {epoch}")
