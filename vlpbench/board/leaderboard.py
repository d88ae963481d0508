"""Leaderboards rebuilt from run directories alone.

``write_leaderboard`` reads one or several results folders (so results made on different machines
merge), computes the statistics over seeds (:mod:`vlpbench.board.stats`), splits any column that
mixes protocols (:mod:`vlpbench.board.protocols`), builds the ablation view
(:mod:`vlpbench.board.ablation`) and writes ``leaderboard.md`` (headline columns),
``leaderboard_full.md`` (every column, with 95 % CIs), ``leaderboard.csv`` (long format: one row per
variant × column with n, mean, std, ci95_low/high, paired difference, p, p_adjusted and the methods), ``leaderboard.tex`` (booktabs) and
``leaderboard.html`` (self-contained: sortable table, a chart per task, loss curves per run).
Runs that are still running, failed or missing are listed, never silently dropped.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vlpbench.board.ablation import ablation_table
from vlpbench.board.collect import collect
from vlpbench.board.current import current_configurations, split_superseded
from vlpbench.board.protocols import split_mixed_columns
from vlpbench.board.html import page
from vlpbench.board.render import Board, latex, long_csv, markdown
from vlpbench.board.reported import matching_reported, reported_html, reported_markdown
from vlpbench.board.stats import SampleStore, best_per_column, mean_ranks, paired_differences, summarise
from vlpbench.board.noise import load_noise_floor, mark_meaningful
from vlpbench.config.floor import variant_role
from vlpbench.engine.files import write_text


def build_board(roots: list[Path], title: str, variant_order: list[str] | None = None,
                baseline: str | None = None, planned: list[tuple[Any, ...]] | None = None,
                adjustment: str = "holm", resamples: int = 400) -> Board:
    """The board of every run below ``roots``.

    ``planned``: the experiment's (variant, seed[, configuration hash]) entries; those without a run
    directory are listed as missing, and the hash says which configuration is current. Runs of a
    variant's earlier configurations are superseded: listed, never in the statistics.
    """
    collected = collect(roots)
    runs, superseded = _current_runs(collected, planned)
    if baseline is None and runs["baseline"].notna().any():
        baseline = runs["baseline"].dropna().mode().iloc[0]  # the experiment file's own baseline
    recorded = runs.assign(index=runs["variant_index"].fillna(1e9)).sort_values(["index", "variant"], kind="stable")
    order = list(dict.fromkeys((variant_order or []) + list(recorded["variant"])))
    order = [v for v in order if v in set(runs["variant"])]
    scores, notes = _finished_scores(collected, runs)
    columns = list(dict.fromkeys(scores["column"]))
    info = column_info(columns, scores, collected.columns)
    undeclared = sorted({c.split("/", 1)[0] for c in columns if not info[c]["declared"]})
    if undeclared:
        notes.append(f"task(s) {', '.join(undeclared)} declare no column metadata: every column is shown as a "
                     "headline column, higher is assumed better, no chance level.")
    lower = {c for c in columns if not info[c]["higher_is_better"]}
    store = SampleStore()
    summary = summarise(scores, store, resamples)
    roles = variant_roles(runs, collected.configs)
    floors = {v for v, role in roles.items() if role.startswith("floor") and v != baseline}
    # floors are anchors, not methods: no bold, no rank, and their comparison with the baseline is a
    # family of its own, so adding a floor never changes the methods' adjusted p-values
    ranked = summary[~summary.index.get_level_values("variant").isin(floors)] if not summary.empty else summary
    differences = paired_differences(scores[~scores["variant"].isin(floors)], baseline or "", store, adjustment,
                                     resamples, resamples)
    floor_scores = scores[scores["variant"].isin(floors | {baseline})]
    floor_differences = (paired_differences(floor_scores, baseline or "", store, adjustment, resamples, resamples)
                         if floors else pd.DataFrame())
    noise, noise_notes = load_noise_floor(roots)
    notes += noise_notes
    differences = mark_meaningful(differences, summary, baseline, noise)
    floor_differences = mark_meaningful(floor_differences, summary, baseline, noise)
    unfinished = runs[runs["state"] != "finished"][["variant", "seed", "state", "error", "path"]]
    headline = [c for c in columns if info[c]["headline"]] or columns
    finished_runs = runs[runs["state"] == "finished"]
    return Board(
        title=title, variants=order, baseline=baseline if baseline in order else None, columns=columns,
        summary=summary, best=best_per_column(ranked, lower) if not ranked.empty else set(), differences=differences,
        planned=dict(Counter(runs["variant"])), finished=dict(Counter(finished_runs["variant"])),
        unfinished=unfinished, ablation=ablation_table(runs, collected.configs, baseline, order, collected.overrides), notes=notes,
        run_paths=[p for p in runs.sort_values(["variant", "seed"])["path"] if isinstance(p, str) and p],
        column_info=info, superseded=superseded, adjustment=adjustment,
        ranks=mean_ranks(ranked, headline, lower) if len(order) > 1 and not ranked.empty else pd.DataFrame(),
        reported=matching_reported(collected.protocols, columns),
        roles={v: roles.get(v, "") for v in order}, floor_differences=floor_differences, noise=noise,
    )


def _current_runs(collected: Any, planned: list[tuple[Any, ...]] | None) -> tuple[pd.DataFrame, Any]:
    """The runs of each variant's current configuration, with a ``missing`` row for every planned
    (variant, seed) without a run directory; and the superseded runs (listed, never in the statistics)."""
    current = current_configurations(collected.runs, planned)
    runs, superseded = split_superseded(collected.runs, current, collected.configs, collected.evaluated)
    present = set(zip(runs["variant"], runs["seed"]))
    missing = [{"run_id": f"{v}__seed{s}", "variant": v, "seed": s, "state": "missing",
                "error": "no run directory yet", "path": ""} for v, s, *_ in (planned or []) if (v, s) not in present]
    if missing:
        runs = pd.concat([runs, pd.DataFrame(missing)], ignore_index=True)
    return runs, superseded


def _finished_scores(collected: Any, runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The finished runs' finite scores, columns that mix protocols split apart; and the notes that
    say what was left out or split."""
    finished_ids = set(runs.loc[runs["state"] == "finished", "run_id"])
    scores = collected.scores[collected.scores["run_id"].isin(finished_ids)]
    notes = []
    finite = np.isfinite(pd.to_numeric(scores["value"], errors="coerce"))
    if (~finite).any():
        notes.append(f"{int((~finite).sum())} non-finite score(s) (NaN/inf) of older runs are left out.")
        scores = scores[finite]
    scores, split_notes = split_mixed_columns(scores, collected.protocols)
    return scores, notes + split_notes


def variant_roles(runs: pd.DataFrame, configs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """variant → its role on the board (:func:`vlpbench.config.floor.variant_role`: a floor, the oracle
    ceiling, or '' for a method), from the config of its newest current run."""
    roles: dict[str, str] = {}
    for row in runs.sort_values("started", na_position="first").itertuples():
        if row.run_id in configs:
            roles[row.variant] = variant_role(configs[row.run_id])
    return roles


def column_info(columns: list[str], scores: pd.DataFrame, declared: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """column → what its task declared (headline, higher_is_better, chance, metric_version); a
    column split by protocol takes its original column's declaration."""
    keys = dict(zip(scores["column"], scores["key"]))
    out = {}
    for column in columns:
        found = declared.get(keys.get(column, column))
        out[column] = {"headline": bool(found["headline"]) if found else True,
                       "higher_is_better": bool(found.get("higher_is_better", True)) if found else True,
                       "chance": found.get("chance") if found else None,
                       "metric_version": found.get("metric_version") if found else None,
                       "description": (found or {}).get("description", ""), "declared": found is not None}
    return out


def write_leaderboard(experiment_dir: Path, variant_order: list[str] | None = None, baseline: str | None = None,
                      roots: list[Path] | None = None, with_reported: bool = True,
                      planned: list[tuple[Any, ...]] | None = None, adjustment: str = "holm") -> str:
    """Rebuild the board files in ``experiment_dir`` from the runs of ``roots`` (default: its own);
    return the headline Markdown."""
    board = build_board(roots or [experiment_dir], f"Leaderboard: {experiment_dir.name}", variant_order, baseline,
                        planned, adjustment)
    reported = reported_markdown(board.reported) if with_reported else ""
    headline = markdown(board, full=False, reported=reported)
    write_text(experiment_dir / "leaderboard.md", headline)
    write_text(experiment_dir / "leaderboard_full.md", markdown(board, full=True, reported=reported))
    write_text(experiment_dir / "leaderboard.csv", long_csv(board))
    write_text(experiment_dir / "leaderboard.tex", latex(board))
    write_text(experiment_dir / "leaderboard.html",
               page(board, [Path(p) for p in board.run_paths], reported_html(board.reported) if with_reported else ""))
    return headline
