"""The board as tables: Markdown (README-ready), a long-format CSV, LaTeX (booktabs)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
import pandas as pd

#: Columns of the headline tables; every column is in the full Markdown and the CSV.
HEADLINE = (r"^linear_probe/", r"^segmentation/dice@", r"^detection/mAP@", r"^zero_shot/auroc$",
            r"^retrieval/(i2t|t2i)/(strict|semantic)/R@10$")


@dataclass
class Board:
    title: str
    variants: list[str]
    baseline: str | None
    columns: list[str]
    summary: pd.DataFrame  # (variant, column) → n, mean, std, ci95
    best: set[tuple[str, str]]
    differences: pd.DataFrame  # (variant, column) → pairs, difference, p
    planned: dict[str, int]
    finished: dict[str, int]
    unfinished: pd.DataFrame  # runs not finished: variant, seed, state, error, path
    ablation: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    run_paths: list[str] = field(default_factory=list)

    def headline_columns(self) -> list[str]:
        rank = {c: next((i for i, p in enumerate(HEADLINE) if re.match(p, c)), None) for c in self.columns}
        keep = sorted((c for c in self.columns if rank[c] is not None), key=lambda c: rank[c])
        return keep or self.columns


def _cell(board: Board, variant: str, column: str, ci: bool, bold: tuple[str, str]) -> str:
    if (variant, column) not in board.summary.index:
        return "—"
    row = board.summary.loc[(variant, column)]
    text = f"{100 * row['mean']:.1f}"
    if row["n"] > 1:
        text += f" ± {100 * row['std']:.1f}"
        if ci:
            text += f" [{100 * (row['mean'] - row['ci95']):.1f}, {100 * (row['mean'] + row['ci95']):.1f}]"
    if (variant, column) in board.best and len(board.variants) > 1:
        text = f"{bold[0]}{text}{bold[1]}"
    return text


def score_table(board: Board, columns: list[str], ci: bool = False, bold: tuple[str, str] = ("**", "**")) -> pd.DataFrame:
    rows = {}
    for variant in board.variants:
        row = {"runs": f"{board.finished.get(variant, 0)}/{board.planned.get(variant, 0)}"}
        row.update({column: _cell(board, variant, column, ci, bold) for column in columns})
        rows[variant] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("variant")


def difference_table(board: Board, columns: list[str]) -> pd.DataFrame:
    rows = {}
    for variant in board.variants:
        if variant == board.baseline:
            continue
        row = {}
        for column in columns:
            if (variant, column) not in board.differences.index:
                row[column] = "—"
                continue
            d = board.differences.loc[(variant, column)]
            p = f"p={d['p']:.3f}" if d["p"] == d["p"] else "p n/a"
            row[column] = f"{100 * d['difference']:+.1f} ({p}, {int(d['pairs'])} seeds)"
        rows[variant] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("variant")


def markdown(board: Board, full: bool, reported: str = "") -> str:
    if not board.variants:
        return f"# {board.title}\n\n(no runs yet)\n"
    columns = board.columns if full else board.headline_columns()
    parts = [f"# {board.title}\n",
             "Scores ×100: mean ± std over seeds" + (" [95 % CI, Student's t]" if full else "")
             + "; **bold** = best in the column; `runs` = finished/planned."
             + ("" if full else " Headline columns; every column is in `leaderboard_full.md` and `leaderboard.csv`.") + "\n",
             score_table(board, columns, ci=full).to_markdown() + "\n"]
    if board.baseline and len(board.variants) > 1:
        parts += [f"## Difference from the baseline `{board.baseline}`\n",
                  "Mean over the seeds both ran, ×100; paired t-test over those seeds.\n",
                  difference_table(board, columns).to_markdown() + "\n"]
    if not board.ablation.empty:
        parts += ["## Ablation view\n", "What each variant changes relative to the baseline, and what a run costs.\n",
                  board.ablation.to_markdown() + "\n"]
    if not board.unfinished.empty:
        parts += ["## Runs not finished\n", board.unfinished.to_markdown(index=False) + "\n"]
    if board.notes:
        parts += ["## Protocol notes\n", "\n".join(f"- {n}" for n in board.notes) + "\n"]
    if reported:
        parts.append(reported)
    return "\n".join(parts)


def long_csv(board: Board) -> str:
    table = board.summary.join(board.differences, how="left").reset_index()
    table["best"] = [(v, c) in board.best for v, c in zip(table["variant"], table["column"])]
    return table.to_csv(index=False)


def _latex_escape(text: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", text).replace("±", r"$\pm$")


def latex(board: Board) -> str:
    columns = board.headline_columns()
    table = score_table(board, columns, bold=(r"\textbf{", "}"))
    header = " & ".join(["variant", "runs", *(_latex_escape(c) for c in columns)]) + r" \\"
    lines = [r"\begin{tabular}{l" + "c" * (len(columns) + 1) + "}", r"\toprule", header, r"\midrule"]
    for variant, row in table.iterrows():
        cells = [_latex_escape(str(variant)), *(_latex_escape(str(v)) for v in row)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return f"% {board.title}: scores x100, mean $\\pm$ std over seeds, bold = best\n" + "\n".join(lines) + "\n"

