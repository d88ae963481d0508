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
        about = f"{document.get('variant')} seed {document.get('seed')}, k = {document.get('repeats')}"
        return floors, [f"noise floor from {path.name} ({about}, measured {document.get('measured')})."]
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
