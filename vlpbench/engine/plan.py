"""``vlpbench run --dry-run``: what a run of an experiment would do, without doing it.

Each run of the experiment is looked up in the results folder, read the way ``vlpbench run``
reads it, and classified:

- ``finished``: done under the current versions; skipped.
- ``stale``: finished under other vlpbench or plugin versions; skipped (``rerun`` with ``--rerun-stale``).
- ``corrupt``: a file of the run folder is unreadable; left as it is.
- ``resume``: interrupted; resumes from its last checkpoint (or evaluates a pretrained model).
- ``reuse``: new, but a finished sibling has the same pretraining; only the tasks are evaluated.
- ``new``: pretrained and evaluated from scratch.

The time estimate is cheap and rough: the wall time (pretraining + evaluation) recorded in the
``provenance.json`` of finished runs of the same variant (else of any run of the experiment),
applied to each run left to do. Nothing is written and no model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlpbench.config.identity import pretrain_identity
from vlpbench.config.loader import Experiment, RunSpec
from vlpbench.engine.files import CorruptFile, read_json, read_yaml_mapping
from vlpbench.engine.reuse import find_reusable_pretraining
from vlpbench.engine.rundir import RunDir, experiment_dir, is_stale, run_dir

#: States that ``vlpbench run`` leaves alone (the latter two unless asked to).
SKIPPED = ("finished", "corrupt")


@dataclass
class PlannedRun:
    spec: RunSpec
    run: RunDir
    state: str  # finished | stale | corrupt | rerun | resume | reuse | new
    detail: str = ""
    seconds: float | None = None  # estimated wall time of what is left to do (None: unknown)

    @property
    def todo(self) -> bool:
        return item_todo(self.state)


def item_todo(state: str) -> bool:
    return state in ("resume", "reuse", "new", "rerun")


def _seconds_of(run: RunDir) -> tuple[str, float, float] | None:
    """(variant, pretraining seconds, evaluation seconds) recorded by a finished run, or None."""
    try:
        if not run.finished:
            return None
        timings = read_json(run.file("provenance.json"), expect=dict).get("timings") or {}
        variant = str(read_yaml_mapping(run.file("config.yaml")).get("variant"))
        return variant, float(timings.get("pretrain_seconds") or 0.0), float(timings.get("eval_seconds") or 0.0)
    except (CorruptFile, OSError, TypeError, ValueError):
        return None


def _recorded_times(folder: Path) -> dict[str, list[tuple[float, float]]]:
    """variant → [(pretrain seconds, eval seconds)] of the finished runs under ``folder/runs``."""
    found: dict[str, list[tuple[float, float]]] = {}
    runs = folder / "runs"
    for candidate in sorted(runs.iterdir()) if runs.is_dir() else []:
        if candidate.name.startswith(".") or not candidate.is_dir():
            continue
        recorded = _seconds_of(RunDir(candidate))
        if recorded is not None:
            found.setdefault(recorded[0], []).append(recorded[1:])
    return found


def _estimate(variant: str, state: str, times: dict[str, list[tuple[float, float]]]) -> float | None:
    samples = times.get(variant) or [t for values in times.values() for t in values]
    if not samples:
        return None
    pretrain = sum(t[0] for t in samples) / len(samples)
    evaluate = sum(t[1] for t in samples) / len(samples)
    return evaluate if state == "reuse" else pretrain + evaluate


def plan_experiment(experiment: Experiment, results_root: Path, rerun_stale: bool = False,
                    reuse_pretraining: bool = True) -> list[PlannedRun]:
    """The state of every run of ``experiment`` under ``results_root``, as ``vlpbench run`` would find it."""
    times = _recorded_times(experiment_dir(results_root, experiment.name))
    planned: list[PlannedRun] = []
    for spec in experiment.runs:
        run = run_dir(results_root, experiment.name, spec.run_id)
        try:
            run.check()
            if run.finished:
                if is_stale(run):
                    state = "rerun" if rerun_stale else "stale"
                    detail = "rerun (--rerun-stale)" if rerun_stale else "finished under other versions; --rerun-stale reruns it"
                else:
                    state, detail = "finished", ""
            elif run.status().get("state") == "pretrained":
                state, detail = "resume", "pretrained; evaluates the tasks"
            elif (checkpoint := run.latest_epoch_checkpoint()) is not None:
                state, detail = "resume", f"from {checkpoint.name}"
            else:
                state, detail = "new", ""
                if reuse_pretraining:
                    source = _reusable(spec, run)
                    if source is not None:
                        state, detail = "reuse", f"pretraining reused from {source.path.name}"
        except CorruptFile as exc:
            state, detail = "corrupt", str(exc)
        seconds = _estimate(spec.variant, state, times) if item_todo(state) else None
        planned.append(PlannedRun(spec, run, state, detail, seconds))
    return planned


def _reusable(spec: RunSpec, run: RunDir) -> RunDir | None:
    return find_reusable_pretraining(run, pretrain_identity(spec.config, spec.seed, spec.protocol_versions,
                                                               spec.world_size))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_plan(experiment: Experiment, planned: list[PlannedRun]) -> str:
    """The plan as printed by ``vlpbench run --dry-run``: one line per run, then the totals."""
    lines = [f"dry run of experiment '{experiment.name}' ({experiment.path}): nothing is run or written"]
    if experiment.settings:
        lines.append("--set: " + ", ".join(f"{k}={v!r}" for k, v in experiment.settings.items()))
    width = max([len(p.spec.variant) for p in planned] + [7])
    for item in planned:
        estimate = f"  ~{_duration(item.seconds)}" if item.seconds is not None else ""
        detail = f"  ({item.detail})" if item.detail else ""
        lines.append(f"  {item.state:<8} {item.spec.variant:<{width}} seed {item.spec.seed:<4} "
                     f"{item.spec.run_id}{estimate}{detail}")
    counts: dict[str, int] = {}
    for item in planned:
        counts[item.state] = counts.get(item.state, 0) + 1
    order = ("finished", "stale", "corrupt", "rerun", "resume", "reuse", "new")
    lines.append("runs: " + ", ".join(f"{counts[s]} {s}" for s in order if s in counts))
    todo = [p for p in planned if p.todo]
    known = [p.seconds for p in todo if p.seconds is not None]
    if not todo:
        lines.append("nothing to run: every run is finished (or left as it is).")
    elif known:
        unknown = len(todo) - len(known)
        lines.append(f"estimated time: ~{_duration(sum(known))} for {len(known)} run(s) on this kind of machine, "
                     "from the timings of finished runs of this experiment"
                     + (f"; {unknown} run(s) without an estimate" if unknown else ""))
    else:
        lines.append("estimated time: unknown (no finished run of this experiment to measure from)")
    return "\n".join(lines)


def plan_summary(planned: list[PlannedRun]) -> dict[str, Any]:
    """The plan as data (for the Python API and tests)."""
    return {"runs": [{"variant": p.spec.variant, "seed": p.spec.seed, "run_id": p.spec.run_id, "state": p.state,
                      "detail": p.detail, "seconds": p.seconds} for p in planned]}
