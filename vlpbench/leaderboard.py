"""Leaderboards rebuilt from run directories alone.

``write_leaderboard`` reads one or several results folders (so results made on different machines
merge), computes the statistics over seeds (:mod:`vlpbench.board.stats`), splits any column that
mixes protocols (:mod:`vlpbench.board.protocols`), builds the ablation view
(:mod:`vlpbench.board.ablation`) and writes ``leaderboard.md`` (headline columns),
``leaderboard_full.md`` (every column, with 95 % CIs), ``leaderboard.csv`` (long format: one row per
variant × column with n, mean, std, CI, paired difference and p), ``leaderboard.tex`` (booktabs) and
``leaderboard.html`` (self-contained: sortable table, a chart per task, loss curves per run).
Runs that are still running, failed or missing are listed, never silently dropped.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from vlpbench.board.ablation import ablation_table
from vlpbench.board.collect import collect
from vlpbench.board.protocols import split_mixed_columns
from vlpbench.board.html import page
from vlpbench.board.render import Board, latex, long_csv, markdown
from vlpbench.board.reported import reported_html, reported_markdown
from vlpbench.board.stats import best_per_column, paired_differences, summarise
from vlpbench.engine.files import write_text


def build_board(roots: list[Path], title: str, variant_order: list[str] | None = None,
                baseline: str | None = None, planned: list[tuple[str, int]] | None = None) -> Board:
    """The board of every run below ``roots``; ``planned`` (variant, seed) pairs of an experiment
    that have no run directory yet are listed as missing."""
    collected = collect(roots)
    runs = collected.runs
    present = set(zip(runs["variant"], runs["seed"]))
    missing = [{"run_id": f"{v}__seed{s}", "variant": v, "seed": s, "state": "missing",
                "error": "no run directory yet", "path": ""} for v, s in (planned or []) if (v, s) not in present]
    if missing:
        runs = pd.concat([runs, pd.DataFrame(missing)], ignore_index=True)
    if baseline is None and runs["baseline"].notna().any():
        baseline = runs["baseline"].dropna().mode().iloc[0]  # the experiment file's own baseline
    recorded = runs.assign(index=runs["variant_index"].fillna(1e9)).sort_values(["index", "variant"], kind="stable")
    order = list(dict.fromkeys((variant_order or []) + list(recorded["variant"])))
    order = [v for v in order if v in set(runs["variant"])]
    scores, notes = split_mixed_columns(collected.scores, collected.protocols)
    columns = list(dict.fromkeys(scores["column"]))
    summary = summarise(scores)
    differences = paired_differences(scores, baseline or "")
    unfinished = runs[runs["state"] != "finished"][["variant", "seed", "state", "error", "path"]]
    return Board(
        title=title, variants=order, baseline=baseline if baseline in order else None, columns=columns,
        summary=summary, best=best_per_column(summary) if not summary.empty else set(), differences=differences,
        planned=dict(Counter(runs["variant"])), finished=dict(Counter(runs.loc[runs["state"] == "finished", "variant"])),
        unfinished=unfinished, ablation=ablation_table(runs, collected.configs, baseline, order, collected.overrides), notes=notes,
        run_paths=[p for p in runs.sort_values(["variant", "seed"])["path"] if p],
    )


def write_leaderboard(experiment_dir: Path, variant_order: list[str] | None = None, baseline: str | None = None,
                      roots: list[Path] | None = None, with_reported: bool = True,
                      planned: list[tuple[str, int]] | None = None) -> str:
    """Rebuild the board files in ``experiment_dir`` from the runs of ``roots`` (default: its own);
    return the headline Markdown."""
    board = build_board(roots or [experiment_dir], f"Leaderboard: {experiment_dir.name}", variant_order, baseline, planned)
    reported = reported_markdown() if with_reported else ""
    headline = markdown(board, full=False, reported=reported)
    write_text(experiment_dir / "leaderboard.md", headline)
    write_text(experiment_dir / "leaderboard_full.md", markdown(board, full=True, reported=reported))
    write_text(experiment_dir / "leaderboard.csv", long_csv(board))
    write_text(experiment_dir / "leaderboard.tex", latex(board))
    write_text(experiment_dir / "leaderboard.html",
               page(board, [Path(p) for p in board.run_paths], reported_html() if with_reported else ""))
    return headline
