"""The plan of a ``vlpbench sweep``: an experiment file's ``sweep:`` section, loaded and checked.

:func:`load_sweep` reads the file, picks the one variant searched around and checks, before Ray is
imported, that every edge value of the search space and every start point gives a valid config and
that the metric is the pretraining loss or a column of one of the experiment's tasks. A trial's run
(:meth:`SweepPlan.trial_spec`) is the variant with the sampled values applied, in validation mode,
with the same run identity rule as ``vlpbench run``. Running the plan is :mod:`vlpbench.launchers.sweep`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlpbench.config.identity import run_hash
from vlpbench.config.loader import (
    BASE_VARIANT, Experiment, RUN_KEYS, RunSpec, _Locator, _validate_model, apply_settings, load_experiment,
    resolve_variant, validate_components,
)
from vlpbench.config.overrides import apply_override, split_path
from vlpbench.config.schema import RunConfig, SweepConfig
from vlpbench.config.yamlmap import load_yaml_with_lines, nearest_line
from vlpbench.core.errors import ConfigError, did_you_mean

LOSS_METRIC = "pretrain/loss"


@dataclass
class SweepPlan:
    """A validated sweep: the experiment, the variant swept and the ``sweep:`` section."""

    experiment: Experiment
    variant: str
    sweep: SweepConfig
    seed: int
    base: dict[str, Any]  # the base config (raw) of the file
    overrides: dict[str, Any]  # the variant's overrides
    lines: dict[Any, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # the command line's --set overrides

    @property
    def path(self) -> Path:
        return self.experiment.path

    @property
    def name(self) -> str:
        """The results folder of the sweep (``<experiment>-sweep``)."""
        return f"{self.experiment.name}-sweep"

    @property
    def epochs(self) -> int:
        return RunConfig.model_validate(self.experiment.runs[0].config).pretrain.epochs

    def trial_spec(self, values: dict[str, Any], label: str) -> RunSpec:
        """The run of one trial: the variant with the sampled ``values`` applied, in validation mode."""
        overrides = {**self.overrides, **values}
        where = _Locator(self.path, self.lines, self.variant, self.overrides, self.settings)
        if not self.settings:
            raw = resolve_variant(self.base, overrides, self.path, self.variant)
        else:  # --set after the variant's overrides, the sampled values last
            raw = resolve_variant(self.base, self.overrides, self.path, self.variant)
            apply_settings(raw, self.settings)
            for key, value in values.items():
                apply_override(raw, key, value, f"{self.path}, sweep.space")
        config = _validate_model(RunConfig, raw, where)
        resolved, versions = validate_components(config, where)
        identity = run_hash(resolved, self.seed, versions, evaluation="validation")
        return RunSpec(self.name, label, self.seed, resolved, overrides, versions, identity, 0, None,
                       evaluation="validation", settings=dict(self.settings))


def _where(path: Path, lines: dict[Any, int], *loc: Any) -> str:
    line = nearest_line(lines, ("sweep",) + loc)
    return f"{path}, line {line}" if line else str(path)


def load_sweep(path: str | Path, variant: str | None = None, settings: dict[str, Any] | None = None) -> SweepPlan:
    """Load an experiment file with a ``sweep:`` section and check the section against the config
    (``settings``: the command line's ``--set`` overrides, applied to every trial)."""
    path = Path(path)
    experiment = load_experiment(path, variants=[variant] if variant else None, settings=settings)
    sweep = experiment.file.sweep
    data, lines = load_yaml_with_lines(path)
    if sweep is None:
        raise ConfigError(f"{path}: no 'sweep:' section. Add one, e.g. sweep: {{space: {{pretrain.lr: "
                          f"{{loguniform: [1.0e-4, 1.0e-2]}}}}, metric: pretrain/loss, mode: min, num_samples: 4}}.")
    if len(experiment.variants) > 1:
        raise ConfigError(f"{path}: a sweep searches around one variant and this file has "
                          f"{len(experiment.variants)} ({', '.join(experiment.variants)}); pick one with --variant.")
    chosen = experiment.variants[0]
    overrides = dict((experiment.file.variants or {BASE_VARIANT: {}})[chosen])
    seed = sweep.seed if sweep.seed is not None else experiment.file.seeds[0]
    base = {k: v for k, v in data.items() if k in RUN_KEYS}
    plan = SweepPlan(experiment, chosen, sweep, seed, base, overrides, lines, dict(settings or {}))
    _check_space(plan)
    _check_metric(plan)
    return plan


def _check_space(plan: SweepPlan) -> None:
    """Every key of the space must be a config key whose every edge value validates."""
    for key, domain in plan.sweep.space.items():
        where = _where(plan.path, plan.lines, "space", key)
        if split_path(key)[0] not in RUN_KEYS:
            raise ConfigError(f"{where}: sweep.space key '{key}' does not start with one of {', '.join(RUN_KEYS)}. "
                              "Search-space keys are dotted config keys, as in variants (e.g. pretrain.lr).")
        for value in domain.examples():
            try:
                plan.trial_spec({key: value}, "check")
            except ConfigError as exc:
                raise ConfigError(f"{where}: sweep.space '{key}' = {value!r} ({domain.kind}) does not give a valid "
                                  f"config: {exc}") from None
    for i, point in enumerate(plan.sweep.start_points):
        try:
            plan.trial_spec(point, "check")
        except ConfigError as exc:
            raise ConfigError(f"{_where(plan.path, plan.lines, 'start_points', i)}: sweep.start_points[{i}] = "
                              f"{point!r} does not give a valid config: {exc}") from None


def _check_metric(plan: SweepPlan) -> None:
    metric = plan.sweep.metric
    where = _where(plan.path, plan.lines, "metric")
    config = RunConfig.model_validate(plan.experiment.runs[0].config)
    tasks = [t.name if sum(u.name == t.name for u in config.tasks) == 1 else f"{t.name}#{i}"
             for i, t in enumerate(config.tasks)]
    if metric == LOSS_METRIC:
        return
    task, _, column = metric.partition("/")
    if task not in tasks or not column:
        choices = [LOSS_METRIC] + [f"{t}/<column>" for t in tasks]
        raise ConfigError(f"{where}: sweep.metric '{metric}' is neither '{LOSS_METRIC}' nor TASK/COLUMN of a task "
                          f"of this experiment{did_you_mean(task, tasks)} Valid: {', '.join(choices)} (columns as in "
                          "metrics.json, e.g. linear_probe/auroc@100%; they are measured on the validation split).")
