"""One row per configuration: a variant's row holds only runs of its *current* configuration.

A variant's runs are seeds of one row only when their configuration identity (the run identity
without the seed, :func:`vlpbench.config.identity.configuration_hash`) is equal. Editing the
experiment file (``epochs``, ``lr``, a task) and rerunning makes runs of a new configuration under
the same variant name; the older runs are *superseded*: listed with what differs, never averaged
with the new ones.

The current configuration of a variant is the one the experiment file defines now, when the board
is built from it (``planned`` entries carry its hash), and otherwise the configuration of the
variant's most recently started run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from vlpbench.board.ablation import flatten
from vlpbench.board.collect import collect

SUPERSEDED_COLUMNS = ["variant", "seed", "state", "run_id", "differs from current", "path"]


def current_configurations(runs: pd.DataFrame, planned: list[tuple[Any, ...]] | None) -> dict[str, str]:
    """variant → its current configuration hash (planned hashes first, else the newest run's)."""
    current = {str(entry[0]): str(entry[2]) for entry in planned or [] if len(entry) > 2 and entry[2]}
    present = runs.dropna(subset=["config_hash"]).sort_values("started", kind="stable")
    for variant, part in present.groupby("variant"):
        current.setdefault(str(variant), str(part["config_hash"].iloc[-1]))
    return current


def describe_difference(old: dict[str, Any], new: dict[str, Any], limit: int = 6) -> str:
    """``key: old → new`` for every setting that differs (at most ``limit``, then a count)."""
    mine, theirs = flatten(old), flatten(new)
    keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    shown = [f"{k}: {_short(mine.get(k, '—'))} → {_short(theirs.get(k, '—'))}" for k in keys[:limit]]
    if len(keys) > limit:
        shown.append(f"… (+{len(keys) - limit})")
    return "; ".join(shown) or "same settings (another data or plugin version, or number of processes)"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "…"


def split_superseded(runs: pd.DataFrame, current: dict[str, str], configs: dict[str, dict[str, Any]],
                     evaluated: dict[str, dict[str, Any]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs of each variant's current configuration, superseded runs with what differs).

    A planned-but-missing run (no ``config_hash``) belongs to the current configuration.
    """
    evaluated = evaluated or {}
    is_current = [h != h or h is None or current.get(v) in (None, h) for v, h in zip(runs["variant"], runs["config_hash"])]
    mask = pd.Series(is_current, index=runs.index, dtype=bool)
    kept, old = runs[mask], runs[~mask]
    reference = {}  # variant → settings of one run of its current configuration
    for row in kept.itertuples():
        if row.config_hash == row.config_hash and row.config_hash is not None:
            reference.setdefault(row.variant, _settings(row.run_id, configs, evaluated))
    rows = []
    for row in old.sort_values(["variant", "started", "seed"]).itertuples():
        new = reference.get(row.variant)
        differs = (describe_difference(_settings(row.run_id, configs, evaluated), new) if new is not None
                   else "the current configuration has no run yet")
        rows.append({"variant": row.variant, "seed": row.seed, "state": row.state, "run_id": row.run_id,
                     "differs from current": differs, "path": row.path})
    return kept, pd.DataFrame(rows, columns=SUPERSEDED_COLUMNS)


def _settings(run_id: str, configs: dict[str, dict[str, Any]], evaluated: dict[str, dict[str, Any]]) -> dict[str, Any]:
    settings = dict(configs.get(run_id) or {})
    if run_id in evaluated:
        settings["evaluated"] = {k: v for k, v in evaluated[run_id].items() if k != "path"}
    return settings


def superseded_warnings(experiment: Any, folder: Any) -> list[str]:
    """One line per variant of ``experiment`` whose results ``folder`` holds runs of another
    configuration (printed by ``vlpbench run`` before it starts, so an edit never pools silently)."""
    runs_folder = Path(folder) / "runs"
    if not runs_folder.is_dir():
        return []
    collected = collect([Path(folder)])
    current = {r.variant: r for r in experiment.runs}
    lines = []
    for variant, spec in current.items():
        old = collected.runs[(collected.runs["variant"] == variant) & (collected.runs["config_hash"] != spec.config_hash)]
        if old.empty:
            continue
        differs = describe_difference(collected.configs.get(old["run_id"].iloc[-1]) or {}, spec.config)
        lines.append(f"variant '{variant}': its configuration changed since {len(old)} earlier run(s) ({differs}); "
                     "they are superseded: listed on the board, never averaged with the new runs.")
    return lines
