"""The ablation view: what each variant changes relative to the baseline, and what it costs."""

from __future__ import annotations

from typing import Any

import pandas as pd

from vlpbench.core.kinds import scoped_slots

IGNORED = ("tasks",)  # the same tasks everywhere: their differences are protocol, not method


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys; a list of components becomes ``key.i = name`` plus
    ``key.i.<name>.param`` for each of its parameters."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        out = {f"{prefix}{i}": v["name"] for i, v in enumerate(value)}
        for i, item in enumerate(value):
            out.update(flatten({k: v for k, v in item.items() if k != "name"}, f"{prefix}{i}.{item['name']}."))
        return out or {prefix.rstrip("."): []}
    return {prefix.rstrip("."): value}


def config_difference(config: dict[str, Any], baseline: dict[str, Any],
                      overrides: dict[str, Any] | None = None) -> list[str]:
    """``key=value`` for every setting that differs from the baseline.

    Components that differ are named (``objective.positive_miner.name=fane.adaptive_miner``); a
    parameter is listed only where both sides use the same component (the parameters of a
    component the baseline does not have are its defaults, implied by its name) or where the
    variant set it explicitly (``overrides``, its dotted keys as written in the experiment file).
    """
    explicit = set(flatten({k: v for k, v in (overrides or {}).items() if k != "preset"}))
    mine = flatten({k: v for k, v in config.items() if k not in IGNORED})
    theirs = flatten({k: v for k, v in baseline.items() if k not in IGNORED})
    changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k) and mine.get(k) != [])

    def is_name(key: str) -> bool:
        return key.endswith(".name") or key.split(".")[-1].isdigit()

    def same_component(key: str) -> bool:
        parent = key.rsplit(".", 1)[0]
        if f"{parent}.name" in mine or f"{parent}.name" in theirs:
            return mine.get(f"{parent}.name") == theirs.get(f"{parent}.name")
        return key in mine and key in theirs  # list items carry their component's name in the key

    names = [k for k in changed if is_name(k)]
    params = [k for k in changed if not is_name(k) and (same_component(k) or k in explicit)]
    shown = [f"{k.removeprefix('objective.').removesuffix('.name')}={mine.get(k, '—')}" for k in names + params]
    preset = (overrides or {}).get("preset")
    return ([f"preset={preset}"] if preset else []) + shown


def negative_scope(config: dict[str, Any]) -> str:
    """The objective's negative scope, with the components whose own ``scope`` differs from it
    (``gathered (cmcgns.cross_attention: local)``)."""
    objective = config.get("objective") or {}
    base = objective.get("negative_scope", "local")
    specs = [spec for _, slot in scoped_slots() for spec in slot.specs(objective)]  # miner, weightings, heads, aux.
    others = [f"{spec.get('name')}: {spec['scope']}" for spec in specs
              if isinstance(spec, dict) and spec.get("scope") not in (None, base)]
    return base + (f" ({', '.join(others)})" if others else "")


def ablation_table(runs: pd.DataFrame, configs: dict[str, dict[str, Any]], baseline: str | None,
                   order: list[str], overrides: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """variant → differs from baseline, negative scope, processes, seeds, samples seen, wall time per
    run, parameters. The scope matters only on several processes; it is shown so that a board of
    multi-process runs says which numbers depend on the number of processes."""
    first = runs.drop_duplicates("variant").set_index("variant")
    base_config = configs.get(first.loc[baseline, "run_id"], {}) if baseline in first.index else None
    rows = []
    for variant in order:
        if variant not in first.index:
            continue
        config = configs.get(first.loc[variant, "run_id"], {})
        finished = runs[(runs["variant"] == variant) & (runs["state"] == "finished")]
        if base_config is None:
            changes = "—"
        elif variant == baseline:
            changes = "(baseline)"
        else:
            diff = config_difference(config, base_config, (overrides or {}).get(first.loc[variant, "run_id"]))
            changes = "; ".join(diff[:6]) + (f"; … (+{len(diff) - 6})" if len(diff) > 6 else "") if diff else "(same config)"
        processes = sorted({int(w) for w in runs.loc[runs["variant"] == variant, "world_size"].dropna()}) or [1]
        rows.append({"variant": variant, "differs from baseline": changes,
                     "negative scope": negative_scope(config),
                     "processes": ", ".join(map(str, processes)) or "1", "seeds": len(finished),
                     "samples seen": _number(finished["samples_seen"].mean()),
                     "wall time / run": _duration(finished["wall_seconds"].mean()),
                     "parameters": _number(finished["parameters"].mean())})
    return pd.DataFrame(rows).set_index("variant") if rows else pd.DataFrame()


def _number(value: float) -> str:
    if value != value or value is None:
        return "—"
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds is None:
        return "—"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
