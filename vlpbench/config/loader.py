"""Load an experiment file and expand it into runs (variants × seeds).

Every error names the file, the line, the key path and the valid keys or close matches. Errors
inside a variant point at the variant's line.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from vlpbench.config.compat import check_compatibility, test_cases_beyond_split
from vlpbench.config.envpath import ALLOWED_TEXT, disallowed_references
from vlpbench.config.errors import Loc, describe, format_errors
from vlpbench.config.floor import check_floor
from vlpbench.config.identity import configuration_hash, run_hash, world_size_from_environment
from vlpbench.config.overrides import apply_override, split_path
from vlpbench.config.schema import ComponentSpec, ExperimentFile, MAX_SEED, ModelConfig, RunConfig
from vlpbench.config.yamlmap import load_yaml_with_lines, nearest_line
from vlpbench.core.capabilities import declared
from vlpbench.core.errors import ConfigError, RegistryError, did_you_mean
from vlpbench.core.kinds import slots as kind_slots
from vlpbench.core.plugins import get_registry

RUN_KEYS = tuple(RunConfig.model_fields)
BASE_VARIANT = "base"


@dataclass(frozen=True)
class RunSpec:
    """One run: a resolved variant config and a seed. Its identity is the hash of both."""

    experiment: str
    variant: str
    seed: int
    config: dict[str, Any]
    overrides: dict[str, Any]
    protocol_versions: dict[str, str]
    run_hash: str
    #: Not part of the identity: where the variant stands in its file, and the file's baseline.
    variant_index: int = 0
    baseline: str | None = None
    #: Processes the run trains on (part of the identity when above 1, see config.identity).
    world_size: int = 1
    #: "test" (the benchmark) or "validation" (sweep trials: tasks score the validation split,
    #: model selection uses a held-out slice of train). Enters the hash only when not "test".
    evaluation: str = "test"
    #: The command line's ``--set KEY=VALUE`` overrides, applied after the variant's (their values are
    #: in ``config``, so they enter the identity; kept apart to be recorded in ``config.yaml``).
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return f"{self.variant}__seed{self.seed}__{self.run_hash[:10]}"

    def run_config(self) -> RunConfig:
        return RunConfig.model_validate(self.config)

    @property
    def config_hash(self) -> str:
        """The variant's configuration identity (the run identity without the seed): runs of one
        variant share a leaderboard row only when it is equal (see the board's superseded runs)."""
        return configuration_hash(self.config, self.protocol_versions, self.world_size, self.evaluation)


@dataclass
class Experiment:
    path: Path
    file: ExperimentFile
    runs: list[RunSpec] = field(default_factory=list)
    #: ``--set`` overrides the runs were expanded with (a reload, e.g. for Slurm, applies them again).
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(r.variant for r in self.runs))


class _Locator:
    """Maps a key path of a resolved variant config to 'file, line N (variant X)'."""

    def __init__(self, source: Path, lines: dict[Loc, int], variant: str | None, overrides: dict[str, Any],
                 settings: dict[str, Any] | None = None):
        self.source, self.lines, self.variant = source, lines, variant
        self.override_paths = {split_path(p): p for p in overrides}
        self.setting_paths = {split_path(p): p for p in settings or {}}

    def __call__(self, loc: Loc) -> str:
        for cut in range(len(loc), 0, -1):
            if loc[:cut] in self.setting_paths:
                suffix = f" (variant '{self.variant}')" if self.variant not in (None, BASE_VARIANT) else ""
                return f"command line, --set {self.setting_paths[loc[:cut]]}{suffix}"
        if self.variant is not None and self.variant != BASE_VARIANT:
            for cut in range(len(loc), 0, -1):
                if loc[:cut] in self.override_paths:
                    key = self.override_paths[loc[:cut]]
                    line = nearest_line(self.lines, ("variants", self.variant, key) + loc[cut:])
                    return f"{self.source}, line {line} (variant '{self.variant}', override '{key}')"
        line = nearest_line(self.lines, loc)
        suffix = f" (in variant '{self.variant}')" if self.variant not in (None, BASE_VARIANT) else ""
        return f"{self.source}, line {line}{suffix}" if line else f"{self.source}{suffix}"


def component_slots(config: RunConfig) -> list[tuple[str, Loc, Any]]:
    """(kind, location, spec) of every component named in a run config, in the order of the kind
    table (:mod:`vlpbench.core.kinds`); a component a spec names in its own parameters (a task's
    ``dataset``) follows that spec."""
    slots: list[tuple[str, Loc, Any]] = []
    for kind, slot in kind_slots():
        value = slot.read(config)
        if not slot.many:
            slots.append((kind, slot.path, value))
            continue
        for i, spec in enumerate(value):
            slots.append((kind, (*slot.path, i), spec))
            if slot.nested is not None:
                key, inner = slot.nested
                nested = spec.params().get(key)
                if isinstance(nested, dict) and "name" in nested:
                    slots.append((inner, (*slot.path, i, key), ComponentSpec.model_validate(nested)))
    return slots


def validate_components(config: RunConfig, where: _Locator) -> tuple[dict[str, Any], dict[str, str]]:
    """Check every component name and its parameters; return the config with defaults filled.

    Also returns the protocol versions of the data sources (they enter the run hash).
    """
    registry = get_registry()
    resolved = config.model_dump(by_alias=True, mode="json")
    versions: dict[str, str] = {}
    problems: list[str] = []
    for kind, loc, spec in component_slots(config):
        try:
            entry = registry.get(kind, spec.name)
            cls = entry.load()
        except RegistryError as exc:
            problems.append(f"{where(loc + ('name',))}: '{describe(loc)}': {exc}")
            continue
        params_model: type[BaseModel] | None = declared(cls, "Params")
        if params_model is None:
            if spec.params():
                problems.append(f"{where(loc)}: {kind} '{spec.name}' takes no parameters, got {sorted(spec.params())}.")
            continue
        try:
            params = params_model.model_validate(spec.params())
        except ValidationError as exc:
            problems.append(format_errors(exc, params_model, where, prefix=loc))
            continue
        node: Any = resolved
        for part in loc:
            node = node[part]
        node.update(params.model_dump(mode="json"))
        if kind == "dataset":
            versions[spec.name] = str(declared(cls, "protocol_version"))
    problems += [f"{where(loc)}: '{describe(loc)}' = {value}: every number must be finite; give a finite value."
                 for loc, value in _non_finite(resolved)]

    problems += [f"{where(loc)}: '{describe(loc)}' refers to the environment variable ${name}, which vlpbench does not "
                 f"expand: only {ALLOWED_TEXT} may appear in paths." for loc, name in disallowed_references(resolved)]
    problems += test_cases_beyond_split(resolved, where)
    if problems:
        raise ConfigError(" ".join(problems))
    check_compatibility(config, registry, where)
    return resolved, versions


def _non_finite(value: Any, loc: Loc = ()) -> list[tuple[Loc, float]]:
    """(location, value) of every NaN or infinite number in a resolved config (YAML's ``.inf``, ``.nan``)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(loc, value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _non_finite(item, loc + (key,))]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _non_finite(item, loc + (index,))]
    return []


def _validate_model(model: type[BaseModel], data: Any, where: _Locator) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, model, where)) from None


def _materialise_default_encoder(config: dict[str, Any], path: str) -> None:
    """Before a preset sets a key inside ``model.<encoder>``, put the default encoder spec there if the
    experiment names none (a preset's ``model.text_encoder.pooling`` then refines the default encoder
    instead of leaving a spec without its ``name``). Validation fills the same defaults, so this
    changes no run's identity."""
    parts = split_path(path)
    if len(parts) < 3 or parts[0] != "model" or parts[1] not in ("image_encoder", "text_encoder"):
        return
    model = config.setdefault("model", {})
    if isinstance(model, dict) and not model.get(parts[1]):
        model[parts[1]] = ModelConfig().model_dump(mode="json")[parts[1]]


def resolve_variant(
    base: dict[str, Any], overrides: dict[str, Any], source: Path, variant: str
) -> dict[str, Any]:
    """Apply a variant's preset (if any) and then its dotted overrides to a copy of the base."""
    config = copy.deepcopy(base)
    overrides = dict(overrides)
    preset = overrides.pop("preset", None)
    if preset is not None:
        try:
            preset_overrides = get_registry().get("preset", str(preset)).load()
        except RegistryError as exc:
            raise ConfigError(f"{source}, variant '{variant}', key 'preset': {exc}") from None
        for path, value in preset_overrides.items():
            _materialise_default_encoder(config, path)
            apply_override(config, path, value, f"preset '{preset}'")
    for path, value in overrides.items():
        if split_path(path)[0] not in RUN_KEYS:
            raise ConfigError(
                f"{source}, variant '{variant}': override '{path}' does not start with one of "
                f"{', '.join(RUN_KEYS)} (or 'preset'). Variants override keys of the base config by dotted path."
            )
        apply_override(config, path, value, f"{source}, variant '{variant}'")
    return config


def check_settings(settings: dict[str, Any]) -> None:
    """``--set`` keys are dotted config keys as in variants (``pretrain.lr``); anything else is refused."""
    for key in settings:
        parts = split_path(key) if key else ()
        if not parts or parts[0] not in RUN_KEYS or any(p == "" for p in parts):
            raise ConfigError(
                f"--set {key}: the key does not start with one of {', '.join(RUN_KEYS)}. --set takes a dotted "
                "config key as variants do, e.g. --set pretrain.lr=1e-4 or --set objective.global.temperature=0.1 "
                "(presets are chosen by variants, not by --set).")


def apply_settings(config: dict[str, Any], settings: dict[str, Any]) -> None:
    """Apply ``--set`` overrides to a resolved variant's raw config (after its preset and overrides)."""
    for path, value in settings.items():
        _materialise_default_encoder(config, path)
        apply_override(config, path, value, f"command line, --set {path}")


def load_experiment(
    path: str | Path,
    seeds: list[int] | None = None,
    variants: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> Experiment:
    """Parse, validate and expand an experiment file into run specs.

    ``settings`` are the command line's ``--set`` overrides (dotted key → value): applied to every
    variant after its own overrides, validated like them, and recorded with each run.
    """
    path = Path(path)
    settings = dict(settings or {})
    check_settings(settings)

    bad_seeds = [seed for seed in seeds or [] if not 0 <= seed <= MAX_SEED]
    if bad_seeds:
        raise ConfigError(f"--seeds: seed {bad_seeds[0]} is out of range; seeds are integers from 0 to {MAX_SEED}.")
    data, lines = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an experiment file is a YAML mapping with at least a 'name' key.")
    file = _validate_model(ExperimentFile, data, _Locator(path, lines, None, {}))
    base = {k: v for k, v in data.items() if k in RUN_KEYS}
    declared = file.variants or {BASE_VARIANT: {}}
    if variants:
        unknown = [v for v in variants if v not in declared]
        if unknown:
            raise ConfigError(
                f"{path}: no variant named '{unknown[0]}'{did_you_mean(unknown[0], list(declared))} "
                f"Variants in this file: {', '.join(declared)}."
            )
        declared = {v: declared[v] for v in variants}
    if file.baseline is not None and file.variants and file.baseline not in file.variants:
        raise ConfigError(f"{path}, line {lines.get(('baseline',))}: baseline '{file.baseline}' is not one of the variants ({', '.join(file.variants)}).")

    experiment = Experiment(path=path, file=file, settings=settings)
    world_size = world_size_from_environment()
    for variant_index, (variant, overrides) in enumerate(declared.items()):
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}, line {lines.get(('variants', variant))}: variant '{variant}' must be a mapping of overrides (use {{}} for none).")
        where = _Locator(path, lines, variant, overrides, settings)
        raw = resolve_variant(base, overrides, path, variant)
        apply_settings(raw, settings)
        run_config = _validate_model(RunConfig, raw, where)
        resolved, versions = validate_components(run_config, where)
        check_floor(resolved, where)
        for seed in seeds if seeds is not None else file.seeds:
            identity = run_hash(resolved, seed, versions, world_size)
            experiment.runs.append(RunSpec(file.name, variant, seed, resolved, dict(overrides), versions, identity,
                                           list(file.variants or {BASE_VARIANT: {}}).index(variant)
                                           if variant in (file.variants or {BASE_VARIANT: {}}) else variant_index,
                                           file.baseline, world_size, settings=dict(settings)))
    return experiment
