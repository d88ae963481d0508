"""Leaderboards rebuilt from run directories alone (pandas): mean ± std over seeds.

One row per variant, one column per task × metric@fraction. A column whose runs were measured
under different protocols (different protocol hashes) is split into one column per protocol, so
numbers of different protocols are never ranked together.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from vlpbench.engine.files import read_json, write_text


def collect_runs(run_roots: list[Path]) -> pd.DataFrame:
    """One row per (run, score): experiment, variant, seed, state, column, protocol, value."""
    rows: list[dict[str, Any]] = []
    for root in run_roots:
        for run in sorted(root.glob("*/config.yaml")):
            folder = run.parent
            config = yaml.safe_load(run.read_text())
            status = read_json(folder / "status.json") if (folder / "status.json").is_file() else {"state": "pending"}
            base = {"experiment": config["experiment"], "variant": config["variant"], "seed": config["seed"],
                    "run_id": config["run_id"], "state": status.get("state", "pending")}
            metrics_file = folder / "metrics.json"
            if status.get("state") != "finished" or not metrics_file.is_file():
                rows.append({**base, "column": None, "protocol": None, "value": float("nan")})
                continue
            for task, result in read_json(metrics_file).items():
                for column, value in result["scores"].items():
                    protocol = result["protocols"].get(column, {}).get("hash", "")
                    rows.append({**base, "column": f"{task}/{column}", "protocol": protocol, "value": value})
    return pd.DataFrame(rows, columns=["experiment", "variant", "seed", "run_id", "state", "column", "protocol", "value"])


def _column_names(scores: pd.DataFrame) -> pd.Series:
    """``task/metric`` or, where a column mixes protocols, ``task/metric [protocol <hash>]``."""
    mixed = scores.groupby("column")["protocol"].transform("nunique") > 1
    return scores["column"].where(~mixed, scores["column"] + " [protocol " + scores["protocol"].str[:8] + "]")


def build_table(runs: pd.DataFrame, variant_order: list[str] | None = None) -> pd.DataFrame:
    """Variants × columns of 'mean ± std' strings, with seed counts."""
    scores = runs.dropna(subset=["column"]).copy()
    if scores.empty:
        table = pd.DataFrame(index=pd.Index([], name="variant"))
    else:
        scores["column"] = _column_names(scores)
        stats = scores.groupby(["variant", "column"])["value"].agg(["mean", "std", "count"])
        cells = stats.apply(lambda r: f"{100 * r['mean']:.1f} ± {100 * (r['std'] if r['count'] > 1 else 0):.1f}", axis=1)
        table = cells.unstack("column")
    planned = runs.groupby("variant")["run_id"].nunique()
    finished = runs[runs["state"] == "finished"].groupby("variant")["run_id"].nunique().reindex(planned.index, fill_value=0)
    table = pd.DataFrame({"runs": finished.astype(str) + "/" + planned.astype(str)}).join(table, how="left")
    order = [v for v in (variant_order or []) if v in table.index] + sorted(set(table.index) - set(variant_order or []))
    return table.loc[order].fillna("—")


#: Columns of the compact board (``leaderboard.md``); every column is in ``leaderboard_full.md`` and the CSV.
HEADLINE = (r"^linear_probe/", r"^segmentation/dice@", r"^detection/mAP@", r"^zero_shot/auroc$",
            r"^retrieval/(i2t|t2i)/(strict|semantic)/R@10$")


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """The ``runs`` column and the headline score columns (all columns if none matches)."""
    rank = {c: next((i for i, p in enumerate(HEADLINE) if re.match(p, c)), None) for c in table.columns}
    keep = sorted((c for c in table.columns if rank[c] is not None), key=lambda c: rank[c])  # stable: keeps fractions in order
    return table[["runs", *keep]] if keep else table


def _markdown(title: str, table: pd.DataFrame, note: str) -> str:
    if table.empty:
        return f"# {title}\n\n(no runs)\n"
    return f"# {title}\n\nScores ×100, mean ± std over seeds; `runs` = finished/planned runs.{note}\n\n{table.to_markdown()}\n"


def write_leaderboard(experiment_dir: Path, variant_order: list[str] | None = None) -> str:
    """Rebuild ``leaderboard.md`` (headline columns), ``leaderboard_full.md`` and ``.csv`` (every
    column) in ``experiment_dir`` from its runs; return the headline Markdown."""
    runs = collect_runs([experiment_dir / "runs"])
    table = build_table(runs, variant_order)
    title = f"Leaderboard: {experiment_dir.name}"
    short = headline(table)
    markdown = _markdown(title, short, "" if short.shape == table.shape else
                         " Headline columns; every column is in `leaderboard_full.md` and `leaderboard.csv`.")
    write_text(experiment_dir / "leaderboard.md", markdown)
    write_text(experiment_dir / "leaderboard_full.md", _markdown(title, table, ""))
    write_text(experiment_dir / "leaderboard.csv", table.to_csv())
    return markdown
