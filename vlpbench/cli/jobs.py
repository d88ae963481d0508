"""``vlpbench run --jobs N``: N processes of one thread share an experiment's runs on one machine.

On a CPU the small models of the default ablation use a second torch thread at about two-thirds
efficiency, while two processes of one thread each use both cores fully (README, *Figures*: one seed
in 17.4 min with two processes, about 23 min in one process with two threads). The runs' locks
already let several processes take turns over an experiment (a run in progress elsewhere is
skipped), so ``--jobs N`` starts N − 1 helper processes running the same command with ``--helper``
(no output but errors, no board), runs this process with one thread too, and waits for the helpers
before the board is written, so that the board holds every run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Sequence

#: environment of a helper: one thread for every math library torch may use
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def helper_argv(args: argparse.Namespace) -> list[str]:
    """The ``vlpbench run`` arguments of a helper: the same experiment, runs and settings."""
    argv = ["run", str(args.file), "--results", str(args.results), "--helper", "--quiet"]
    if args.seeds:
        argv += ["--seeds", ",".join(str(seed) for seed in args.seeds)]
    for variant in args.variant or []:
        argv += ["--variant", variant]
    for setting in args.set or []:
        argv += ["--set", setting]
    if args.device:
        argv += ["--device", args.device]
    if args.report_to:
        argv += ["--report-to", args.report_to]
    argv += ["--rerun-stale"] * bool(args.rerun_stale) + ["--no-reuse"] * bool(args.no_reuse)
    return argv


class Helpers:
    """N − 1 helper processes of ``vlpbench run``; :meth:`wait` before the board is written."""

    def __init__(self, args: argparse.Namespace, count: int) -> None:
        import torch

        env = {**os.environ, **ONE_THREAD}
        command = [sys.executable, "-m", "vlpbench", *helper_argv(args)]
        self.processes = [subprocess.Popen(command, env=env) for _ in range(count)]
        self.threads = torch.get_num_threads()  # this process's, given back by wait() or stop()
        torch.set_num_threads(1)

    def wait(self) -> list[int]:
        """Wait for every helper and give this process its threads back (for the board); the
        helpers' exit codes (a helper's failed run is also on the board)."""
        codes = [process.wait() for process in self.processes]
        self._restore_threads()
        return codes

    def _restore_threads(self) -> None:
        import torch

        torch.set_num_threads(self.threads)

    def stop(self) -> None:
        """Terminate helpers still running (this process was interrupted: their runs are marked
        interrupted, as this process's are) and give this process its threads back."""
        self._restore_threads()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def failed_helpers(codes: Sequence[int]) -> str | None:
    """A one-line note when a helper ended with an error, else None."""
    bad = [code for code in codes if code != 0]
    if not bad:
        return None
    return (f"{len(bad)} of {len(codes)} helper process(es) ended with exit code(s) {sorted(set(bad))}: a run they "
            "took failed (its status.json says why) or a helper was stopped; the board shows what finished.")
