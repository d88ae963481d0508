"""``vlpbench sweep``: hyperparameter search with Ray Tune over any key of an experiment.

The ``sweep:`` section of an experiment file declares the search space (dotted config keys, as in
variants, component parameters included), the metric (``pretrain/loss`` or a task score
``TASK/COLUMN`` measured on the *validation* split), the mode, the number of samples, the
scheduler (ASHA with the epoch as its time unit, or FIFO), the searcher (random or Optuna) and the
resources of a trial.

Every trial is an ordinary run: ``results/<experiment>-sweep/runs/<trial>__seed<s>__<hash>/``
with the same files as ``vlpbench run`` writes, evaluated in validation mode (see
:mod:`vlpbench.engine.validation`), so the leaderboard of that folder shows the trials and never
mixes their numbers with test numbers. Tune's own state lives in ``results/<experiment>-sweep/tune``
(``--resume`` continues an interrupted sweep from it); the best configuration is printed and saved
as a runnable experiment file, ``results/<experiment>-sweep/best.yaml``.

Ray is imported only when a sweep runs. The plan (loading and checking the ``sweep:`` section) is
:mod:`vlpbench.launchers.sweep_plan`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from vlpbench.config.loader import apply_settings, resolve_variant
from vlpbench.config.overrides import apply_override
from vlpbench.config.schema import SweepConfig
from vlpbench.config.yamlmap import load_yaml_with_lines
from vlpbench.core.errors import ConfigError, UserError
from vlpbench.engine.files import read_json, write_json, write_text
from vlpbench.engine.rundir import RunDir, run_dir
from vlpbench.launchers.raycluster import joined_cluster, local_cluster
from vlpbench.launchers.sweep_plan import LOSS_METRIC, SweepPlan, load_sweep

TUNE_NAME = "tune"


def search_space(sweep: SweepConfig) -> dict[str, Any]:
    """The ``sweep.space`` as Ray Tune domains."""
    from ray import tune

    make: dict[str, Callable[..., Any]] = {"choice": tune.choice, "uniform": tune.uniform,
                                           "loguniform": tune.loguniform, "randint": tune.randint}
    space = {}
    for key, domain in sweep.space.items():
        space[key] = make[domain.kind](list(domain.values)) if domain.kind == "choice" else make[domain.kind](*domain.values)
    return space


def _flatten(metrics: dict[str, Any]) -> dict[str, float]:
    return {f"{task}/{column}": float(value) for task, result in metrics.items()
            for column, value in result["scores"].items()}


def trial_label(trial_id: str) -> str:
    """``3f2a1_00004`` → ``trial-004`` (stable across a resume)."""
    tail = trial_id.rsplit("_", 1)[-1]
    return f"trial-{int(tail):03d}" if tail.isdigit() else f"trial-{tail}"


def run_trial(values: dict[str, Any], *, file: str, variant: str | None, results: str,
              settings: dict[str, Any] | None = None) -> None:
    """Ray Tune's trainable: one trial = one run directory; reports the metric after every epoch."""
    from ray import tune

    from vlpbench.engine.execute import execute_run  # lazy: torch; planning a sweep needs none

    plan = load_sweep(file, variant, settings)
    spec = plan.trial_spec(values, trial_label(tune.get_context().get_trial_id()))
    run = run_dir(Path(results), plan.name, spec.run_id)
    epochs = spec.run_config().pretrain.epochs
    metric = plan.sweep.metric

    def on_epoch_end(epoch: int, loss: float, evaluate: Callable[[], dict[str, Any]]) -> None:
        if epoch + 1 >= epochs:
            return  # the last epoch is reported with the final evaluation below
        report = {"epoch": epoch + 1, LOSS_METRIC: loss, "run": str(run.path)}
        if metric != LOSS_METRIC:
            report.update(_flatten(evaluate()))
        tune.report(report)

    if not run.finished:
        try:
            execute_run(spec, run, progress=False, on_epoch_end=on_epoch_end)
        except UserError as exc:
            run.set_status("failed", error=str(exc))
            raise
    history = read_json(run.file("history.json"))["steps"]
    last = [r["total"] for r in history if r["epoch"] == epochs - 1]
    report = {"epoch": epochs, LOSS_METRIC: sum(last) / len(last) if last else math.nan, "run": str(run.path),
              **_flatten(read_json(run.file("metrics.json")))}
    if metric not in report:
        raise UserError(f"sweep.metric '{metric}' is not among the scores this trial measured: "
                        f"{', '.join(k for k in report if k not in ('epoch', 'run'))}. Fix sweep.metric in {file}.")
    tune.report(report)


@dataclass
class TrialRow:
    label: str
    values: dict[str, Any]
    state: str  # finished | stopped | failed | unfinished
    epochs: int
    metric: float | None
    run: str
    error: str = ""


@dataclass
class SweepOutcome:
    folder: Path
    trials: list[TrialRow]
    best: TrialRow | None
    best_file: Path | None
    interrupted: bool = False


def sweep_cpus(num_cpus: int | None = None) -> int:
    """The CPUs a sweep's own Ray cluster gets: ``--num-cpus``, else the Slurm job's, else this process's."""
    return num_cpus or int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or len(os.sched_getaffinity(0))


def check_sweep_state(plan: SweepPlan, results_root: Path, resume: bool) -> Path:
    """Tune's state folder of the sweep; --resume needs one, a new sweep must not find one."""
    folder = (results_root / plan.name).resolve()
    state = folder / TUNE_NAME / plan.name
    if resume and not state.is_dir():
        raise ConfigError(f"--resume: no sweep to resume at {state}; run `vlpbench sweep {plan.path}` without --resume.")
    if not resume and state.is_dir():
        raise ConfigError(f"a sweep of '{plan.experiment.name}' already exists at {state}: continue it with --resume, "
                          f"or remove {folder} to start over.")
    return state


def run_sweep(plan: SweepPlan, results_root: Path, resume: bool = False, num_cpus: int | None = None,
              address: str | None = None, echo: Callable[[str], None] = print) -> SweepOutcome:
    """Run (or resume) the sweep with Ray Tune; write the board and ``best.yaml``."""
    try:
        import ray
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    except ImportError:
        raise UserError("vlpbench sweep needs Ray Tune: pip install 'vlpbench[sweep]' (and 'vlpbench[optuna]' for "
                        "the Optuna searcher).") from None
    folder = (results_root / plan.name).resolve()
    storage = folder / TUNE_NAME
    state = check_sweep_state(plan, results_root, resume)
    sweep = plan.sweep
    trainable = tune.with_resources(
        functools.partial(run_trial, file=str(plan.path.resolve()), variant=plan.variant, results=str(results_root.resolve()),
                          settings=plan.settings),
        {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu})

    if ray.is_initialized():  # a caller's session (tests, notebooks): use it, leave it running
        session: Any = contextlib.nullcontext()
    elif address:
        session = joined_cluster(address, echo)
    else:
        session = local_cluster(sweep_cpus(num_cpus), echo)
    with session:
        if resume:
            echo(f"resuming the sweep in {state}")
            tuner = tune.Tuner.restore(str(state), trainable, resume_unfinished=True, resume_errored=True)
        else:
            if sweep.scheduler.name == "asha":
                scheduler: Any = ASHAScheduler(time_attr="epoch", max_t=max(1, plan.epochs),
                                               grace_period=min(sweep.scheduler.grace_period, max(1, plan.epochs)),
                                               reduction_factor=sweep.scheduler.reduction_factor)
            else:
                scheduler = FIFOScheduler()
            tuner = tune.Tuner(
                trainable, param_space=search_space(sweep),
                tune_config=tune.TuneConfig(metric=sweep.metric, mode=sweep.mode, num_samples=sweep.num_samples,
                                            scheduler=scheduler, search_alg=_searcher(sweep),
                                            ),
                run_config=tune.RunConfig(name=plan.name, storage_path=str(storage), verbose=0,
                                          failure_config=tune.FailureConfig(max_failures=0)))
        echo(f"sweep '{plan.name}': {sweep.num_samples} trial(s), metric {sweep.metric} ({sweep.mode}) on the "
             f"validation split, {sweep.scheduler.name} scheduler, {sweep.searcher.name} search -> {folder}")
        grid = tuner.fit()
        outcome = _summarise(plan, grid, folder)
    _write_outputs(plan, outcome, echo)
    return outcome


def _searcher(sweep: SweepConfig) -> Any:
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    points = [dict(point) for point in sweep.start_points] or None
    if sweep.searcher.name == "random":
        return BasicVariantGenerator(random_state=sweep.searcher.seed, max_concurrent=sweep.max_concurrent or 0,
                                     points_to_evaluate=points)
    try:
        from ray.tune.search.optuna import OptunaSearch

        import optuna  # noqa: F401
    except ImportError:
        raise UserError("sweep.searcher 'optuna' needs Optuna: pip install 'vlpbench[optuna]', or use "
                        "searcher: {name: random}.") from None
    searcher = OptunaSearch(seed=sweep.searcher.seed, points_to_evaluate=points)
    return ConcurrencyLimiter(searcher, max_concurrent=sweep.max_concurrent) if sweep.max_concurrent else searcher


def _summarise(plan: SweepPlan, grid: Any, folder: Path) -> SweepOutcome:
    rows: list[TrialRow] = []
    for result in grid:
        metrics = result.metrics or {}
        values = {k: v for k, v in (result.config or {}).items()}
        epochs = int(metrics.get("epoch", 0) or 0)
        value = metrics.get(plan.sweep.metric)
        run = metrics.get("run", "")
        if metrics.get("trial_id"):
            label = trial_label(str(metrics["trial_id"]))
        else:  # never reported: the trial id is in the name of Tune's trial folder
            found = re.search(r"run_trial_([0-9a-f]+(?:_\d{5})?)_", Path(str(getattr(result, "path", "") or "")).name)
            label = trial_label(found.group(1)) if found else "?"
        if result.error is not None:
            state, error = "failed", str(result.error).strip().splitlines()[-1][:300]
        elif epochs >= plan.epochs and run and RunDir(Path(run)).finished:
            state, error = "finished", ""
        elif epochs > 0:
            state, error = "stopped", f"stopped early by {plan.sweep.scheduler.name.upper()} after epoch {epochs}"
        else:
            state, error = "unfinished", "never reported"
        if run and state == "stopped":
            RunDir(Path(run)).set_status("stopped", error=error)
        rows.append(TrialRow(label, values, state, epochs, float(value) if value is not None else None, run, error))
    rows.sort(key=lambda r: r.label)
    finished = [r for r in rows if r.state == "finished" and r.metric is not None and math.isfinite(r.metric)]
    best = None
    if finished:
        pick = min if plan.sweep.mode == "min" else max
        best = pick(finished, key=lambda r: r.metric)  # type: ignore[arg-type, return-value]
    interrupted = len(rows) < plan.sweep.num_samples or any(r.state == "unfinished" for r in rows)
    return SweepOutcome(folder, rows, best, folder / "best.yaml" if best else None, interrupted)


def best_experiment(plan: SweepPlan, values: dict[str, Any]) -> dict[str, Any]:
    """A runnable experiment file (as data): the swept variant with the best values, no sweep."""
    data, _ = load_yaml_with_lines(plan.path)
    out: dict[str, Any] = {"name": f"{plan.experiment.name}-best",
                           "description": f"best configuration of the sweep of {plan.path.name} "
                                          f"({plan.sweep.metric}, {plan.sweep.mode}, validation split)"}
    out["seeds"] = data.get("seeds", [0])

    config = resolve_variant(plan.base, plan.overrides, plan.path, plan.variant)
    apply_settings(config, plan.settings)
    for key, value in values.items():
        apply_override(config, key, value, f"{plan.path}, sweep.space")
    out.update(copy.deepcopy(config))
    if "launcher" in data:
        out["launcher"] = data["launcher"]
    return out


def _write_outputs(plan: SweepPlan, outcome: SweepOutcome, echo: Callable[[str], None]) -> None:
    from vlpbench.board.leaderboard import write_leaderboard  # lazy: pandas, scipy

    write_json(outcome.folder / "sweep.json", {
        "experiment": plan.experiment.name, "file": str(plan.path), "variant": plan.variant,
        "metric": plan.sweep.metric, "mode": plan.sweep.mode, "split": "validation",
        "trials": [row.__dict__ for row in outcome.trials],
        "best": outcome.best.__dict__ if outcome.best else None,
    })
    if (outcome.folder / "runs").is_dir():  # the best trial is the baseline the others are compared with
        write_leaderboard(outcome.folder, baseline=outcome.best.label if outcome.best else None, with_reported=False)
    echo(f"{'trial':<10} {'state':<10} {'epochs':>6} {plan.sweep.metric:>14}  values")
    for row in outcome.trials:
        shown = "-" if row.metric is None else f"{row.metric:.4f}"
        echo(f"{row.label:<10} {row.state:<10} {row.epochs:>6} {shown:>14}  "
             + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.values.items()))
    if outcome.interrupted:
        echo(f"the sweep was interrupted ({sum(r.state != 'unfinished' for r in outcome.trials)} of "
             f"{plan.sweep.num_samples} trials done); continue it with `vlpbench sweep {plan.path} --resume`"
             + (f" --results {outcome.folder.parent}" if outcome.folder.parent.name != "results" else "") + ".")
    if outcome.best is None:
        echo("no trial finished, so there is no best configuration; see the failed trials' status.json.")
        return
    text = (f"# Best configuration of the sweep of {plan.path} ({plan.sweep.metric} = {outcome.best.metric:.6g}, "
            f"{plan.sweep.mode}, validation split; trial {outcome.best.label}).\n"
            f"# Run it on the test split with: vlpbench run {outcome.best_file}\n")
    text += yaml.safe_dump(best_experiment(plan, outcome.best.values), sort_keys=False)
    write_text(outcome.best_file, text)
    echo(f"best{' so far' if outcome.interrupted else ''}: {outcome.best.label} with {plan.sweep.metric} = {outcome.best.metric:.6g}: "
         + ", ".join(f"{k}={v}" for k, v in outcome.best.values.items()))
    echo(f"written: {outcome.best_file} (run it with `vlpbench run {outcome.best_file}`), {outcome.folder}/sweep.json, "
         f"{outcome.folder}/leaderboard.md")
