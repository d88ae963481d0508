"""vlpbench's Python API: what the command line does, for notebooks and scripts.

The command line is a thin layer over these functions (``vlpbench run`` calls :func:`load`,
:func:`plan` or :func:`run`), so a script gets exactly the CLI's behaviour — the same validation,
run identities, resume, files and board::

    from vlpbench import api

    experiment = api.load("quickstart", seeds=[0], settings={"pretrain.lr": 1e-4})
    for item in api.plan(experiment, "results"):
        print(item.state, item.spec.run_id, item.seconds)
    result = api.run(experiment, "results", report_to=["tensorboard"])
    board = api.read_board("results/quickstart")
    print(board.summary)                      # (variant, column) → n, mean, std, 95 % CI

User mistakes raise :class:`vlpbench.core.errors.UserError` (the CLI prints them as one paragraph).
Importing this module imports nothing heavy; torch is imported when a run starts. Plugins import
from :mod:`vlpbench.plugin_api` instead (the component contracts and building blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from vlpbench.core.describe import describe_entry, find_entries, listing
from vlpbench.core.plugins import get_plugins

if TYPE_CHECKING:  # pragma: no cover
    from vlpbench.board.render import Board
    from vlpbench.config.loader import Experiment
    from vlpbench.engine.plan import PlannedRun
    from vlpbench.engine.rundir import RunDir
    from vlpbench.engine.runner import ExperimentOutcome

__all__ = ["load", "plan", "run", "RunResult", "read_board", "evaluate", "export", "describe", "components"]


def load(experiment: str | Path, seeds: list[int] | None = None, variants: list[str] | None = None,
         settings: dict[str, Any] | None = None) -> "Experiment":
    """Validate an experiment file — or a shipped experiment by name (``"quickstart"``) — and expand it
    into runs; ``settings`` are ``--set`` overrides (dotted key → value)."""
    from vlpbench.config.loader import load_experiment
    from vlpbench.config.shipped import resolve_experiment

    return load_experiment(resolve_experiment(str(experiment)), seeds=seeds, variants=variants, settings=settings)


def plan(experiment: "Experiment", results: str | Path = "results", rerun_stale: bool = False,
         reuse_pretraining: bool = True) -> list["PlannedRun"]:
    """What :func:`run` would do with each run (``finished``, ``stale``, ``resume``, ``reuse``, ``new``, …),
    with a time estimate from finished runs; nothing is written (``vlpbench run --dry-run``)."""
    from vlpbench.engine.plan import plan_experiment

    return plan_experiment(experiment, Path(results), rerun_stale=rerun_stale, reuse_pretraining=reuse_pretraining)


@dataclass
class RunResult:
    """What :func:`run` did: every run's outcome, the board (as text) and where the files are."""

    outcome: "ExperimentOutcome"
    board: str
    folder: Path

    @property
    def failed(self) -> list[Any]:
        return self.outcome.failed


def run(experiment: "Experiment", results: str | Path = "results", rerun_stale: bool = False,
        reuse_pretraining: bool = True, progress: bool = False, report_to: list[str] | tuple[str, ...] = (),
        echo: Callable[[str], None] = print, before_board: Callable[[], Any] | None = None,
        board: bool = True) -> RunResult:
    """Run every unfinished run of ``experiment`` in this process, then write the board
    (``vlpbench run``). One run's failure never stops the others: see ``result.failed``.
    ``before_board`` is called between the runs and the board (``--jobs``: wait for the helper
    processes); ``board=False`` writes none (a ``--jobs`` helper)."""
    from vlpbench.engine.distributed import is_main
    from vlpbench.engine.rundir import experiment_dir
    from vlpbench.engine.runner import run_experiment
    from vlpbench.engine.tracking import check_backends
    from vlpbench.board.leaderboard import write_leaderboard

    root = Path(results)
    check_backends(list(report_to))
    outcome = run_experiment(experiment, root, rerun_stale=rerun_stale, progress=progress,
                             reuse_pretraining=reuse_pretraining, echo=echo, report_to=report_to)
    folder = experiment_dir(root, experiment.name)
    if before_board is not None:
        before_board()
    text = ""
    if board and is_main():  # under torchrun every process runs; rank 0 alone writes the board
        text = write_leaderboard(folder, experiment.variants, experiment.file.baseline,
                                 planned=[(r.variant, r.seed, r.config_hash) for r in experiment.runs])
    return RunResult(outcome, text, folder)


def read_board(folder: str | Path, baseline: str | None = None) -> "Board":
    """The board of the runs under ``folder`` (``results/<experiment>``, or several folders' runs when a
    list is given): ``summary`` (per variant and column: n, mean, std, CI), ``differences`` against the
    baseline, ``unfinished``, ``superseded``, ``ablation``, … — the tables the board files show."""
    from vlpbench.board.leaderboard import build_board

    roots = [Path(f) for f in folder] if isinstance(folder, (list, tuple)) else [Path(folder)]
    return build_board(roots, f"Leaderboard: {roots[0].name}", baseline=baseline)


def evaluate(checkpoint: str | Path, experiment: str | Path, label: str, results: str | Path = "results",
             arch: str | None = None, variant: str | None = None, key_map: dict[str, Any] | None = None,
             separate_row: bool = False, echo: Callable[[str], None] = print) -> "RunDir":
    """Score a run directory or a checkpoint file with an experiment's tasks (``vlpbench eval``);
    ``key_map``: ``{"format": "mgca", "prefix": ..., "strip": [...]}`` for published layouts."""
    from vlpbench.engine.evaluate import evaluate_checkpoint
    from vlpbench.config.shipped import resolve_experiment

    return evaluate_checkpoint(Path(checkpoint), resolve_experiment(str(experiment)), Path(results), label,
                               variant=variant, arch=arch, echo=echo, separate_row=separate_row, key_map=key_map)


def export(run_dir: str | Path, fmt: str = "all", out: str | Path | None = None) -> list[Path]:
    """Write a finished run's encoders for timm / Hugging Face with model cards (``vlpbench export``)."""
    from vlpbench.engine.export import export_run

    return export_run(Path(run_dir), fmt, Path(out) if out is not None else None)


def components(kind: str | None = None) -> list[dict[str, Any]]:
    """Installed components (of ``kind``): kind, name, plugin, target, summary, distribution and the registration's
    metadata (``vlpbench plugins --json``; the whole metadata of a component: ``describe``)."""
    return listing(get_plugins(), kind)["components"]


def describe(name: str, kind: str | None = None) -> list[dict[str, Any]]:
    """One component's parameters, defaults, limits, doc and origin (``vlpbench describe``)."""
    loaded = get_plugins()
    return [describe_entry(entry, loaded.versions()) for entry in find_entries(loaded.registry, name, kind)]
