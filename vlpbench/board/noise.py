"""The downstream noise floor on the board: when is a difference from the baseline meaningful?

A column's *noise floor* is the standard deviation of its score when the same frozen encoder is
evaluated again with only the downstream seeds moved (head initialisation and order; the label
fractions fixed): ``benchmarks/bench_noise.py --floor results/<experiment>/noise_floor.json``
measures it and writes this file. With it, the board calls a difference from the baseline
*meaningful* only when it clears all three:

- the multiple-comparison control: adjusted p < ``ALPHA``;
- the noise floor: |difference| > ``NOISE_MULTIPLE`` × the column's floor (two evaluations of one
  encoder differ by about √2 floors; twice the floor is the 95 % band of a single evaluation);
- the seed spread: |difference| > the baseline's standard deviation over its seeds.

A column without a measured floor is never called meaningful (the board says which ones lack it);
without the file the board shows p-values only, and says how to measure the floor.

The noise of a head depends on the encoder it trains on (a 1 % detection head on one encoder can be
far less stable than on another), so the file may hold the measurements of several encoders
(``measurements``; ``bench_noise.py --floor`` adds to an existing file, :func:`merge_floor`), and
each column's floor is the largest of them: a difference must clear the noisiest encoder measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from vlpbench.engine.files import CorruptFile, read_json

NOISE_FILE = "noise_floor.json"
ALPHA = 0.05
NOISE_MULTIPLE = 2.0


def floor_document(rows: Iterable[dict[str, Any]], variant: str, seed: int, repeats: int, measured: str,
                   command: str = "") -> dict[str, Any]:
    """``noise_floor.json`` from ``bench_noise``'s rows (``column`` "task column", ``noise_std`` in
    points ×100): board column → standard deviation as a fraction, with how it was measured."""
    columns = {}
    for row in rows:
        std = row.get("noise_std")
        if std is None or not math.isfinite(float(std)):
            continue
        task, _, column = str(row["column"]).partition(" ")
        columns[f"{task}/{column}"] = {"std": float(std) / 100, "repeats": int(row.get("repeats") or repeats)}
    return {"variant": variant, "seed": seed, "repeats": repeats, "measured": measured, "command": command,
            "columns": columns}


def merge_floor(existing: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``noise_floor.json`` holding ``existing``'s measurements and ``new`` (a :func:`floor_document`;
    a remeasurement of the same variant and seed replaces the earlier one): every measurement under
    ``measurements``, and per column the largest standard deviation among them, with the variant it
    came from. The top-level ``variant``/``seed``/``repeats``/``measured`` describe the newest one."""
    earlier = [] if not existing else list(existing.get("measurements") or [_measurement(existing)])
    kept = [m for m in earlier if (m.get("variant"), m.get("seed")) != (new.get("variant"), new.get("seed"))]
    measurements = kept + [_measurement(new)]
    columns: dict[str, dict[str, Any]] = {}
    for measurement in measurements:
        for column, value in measurement["columns"].items():
            if column not in columns or float(value["std"]) > columns[column]["std"]:
                columns[column] = {**value, "std": float(value["std"]),
                                   "variant": f"{measurement.get('variant')} seed {measurement.get('seed')}"}
    return {**_measurement(new), "columns": columns, "measurements": measurements}


def _measurement(document: dict[str, Any]) -> dict[str, Any]:
    keys = ("variant", "seed", "repeats", "measured", "command")
    return {**{k: document.get(k) for k in keys},
            "columns": {c: {"std": float(v["std"]), "repeats": v.get("repeats")}
                        for c, v in (document.get("columns") or {}).items()}}


def load_noise_floor(roots: list[Path]) -> tuple[dict[str, float], list[str]]:
    """(column → noise standard deviation, notes) from the first ``noise_floor.json`` among ``roots``;
    an unreadable file is a note, never a failure of the board."""
    for root in roots:
        path = Path(root) / NOISE_FILE
        if not path.is_file():
            continue
        try:
            document = read_json(path, expect=dict)
            floors = {str(c): float(v["std"]) for c, v in (document.get("columns") or {}).items()}
        except (CorruptFile, KeyError, TypeError, ValueError, AttributeError) as exc:
            return {}, [f"{path} is not a noise floor file ({exc}); differences are shown without it."]
        measurements = document.get("measurements") or [document]
        about = "; ".join(f"{m.get('variant')} seed {m.get('seed')}, k = {m.get('repeats')}, measured {m.get('measured')}"
                          for m in measurements)
        largest = " (each column: the largest of them)" if len(measurements) > 1 else ""
        return floors, [f"noise floor from {path.name} ({about}){largest}."]
    return {}, []


def mark_meaningful(differences: pd.DataFrame, summary: pd.DataFrame, baseline: str | None,
                    floors: dict[str, float]) -> pd.DataFrame:
    """``differences`` with ``noise_floor``, ``seed_std`` (the baseline's) and ``meaningful`` added
    (``meaningful`` is empty when no floor file was given)."""
    if differences.empty:
        return differences
    out = differences.copy()
    columns = out.index.get_level_values("column")
    out["noise_floor"] = [floors.get(c, math.nan) for c in columns]
    out["seed_std"] = [_baseline_std(summary, baseline, c) for c in columns]
    if not floors:
        out["meaningful"] = pd.NA
        return out
    size = out["difference"].abs()
    clears_noise = size > NOISE_MULTIPLE * out["noise_floor"]  # False where the floor is unknown (NaN)
    clears_seeds = size > out["seed_std"].fillna(0.0)
    out["meaningful"] = (out["p_adjusted"] < ALPHA) & clears_noise & clears_seeds
    return out


def _baseline_std(summary: pd.DataFrame, baseline: str | None, column: str) -> float:
    if baseline is None or summary.empty or (baseline, column) not in summary.index:
        return math.nan
    value = summary.loc[(baseline, column), "std"]
    return float(value) if value == value else math.nan
