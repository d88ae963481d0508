"""The board as tables: Markdown (README-ready), a long-format CSV, LaTeX (booktabs)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from vlpbench.board.noise import ALPHA, NOISE_MULTIPLE
from vlpbench.board.multiple import METHODS


#: The legend of the ``role`` column.
ROLES_TEXT = ("floor = the same encoders with no pretraining (random or ImageNet initialisation): never bold, not "
              "ranked, compared with the baseline in a section of their own; ceiling = the oracle miner's "
              "label-aware positives, the upper bound of false-negative handling")
FLOORS_TEXT = ("The floor rows evaluate the encoders as built, with no pretraining: the baseline's difference from "
               "them is what pretraining adds. Each figure is floor minus baseline, ×100 (its negative is the gain of "
               "pretraining), the mean over the seeds both ran; p-values adjusted among the floors' comparisons only, so "
               "adding a floor leaves the methods' adjusted p-values as they were.")


@dataclass
class Board:
    title: str
    variants: list[str]
    baseline: str | None
    columns: list[str]
    summary: pd.DataFrame  # (variant, column) → n, mean, std, ci95_low, ci95_high, ci_method
    best: set[tuple[str, str]]
    differences: pd.DataFrame  # (variant, column) → pairs, difference, its CI, p, p_method, p_adjusted
    planned: dict[str, int]
    finished: dict[str, int]
    unfinished: pd.DataFrame  # runs not finished: variant, seed, state, error, path
    ablation: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    run_paths: list[str] = field(default_factory=list)
    #: column → what its task declared: headline, higher_is_better, chance, metric_version
    column_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    superseded: pd.DataFrame = field(default_factory=pd.DataFrame)  # runs of earlier configurations
    adjustment: str = "holm"
    ranks: pd.DataFrame = field(default_factory=pd.DataFrame)  # variant → mean rank across headline columns
    reported: list[dict[str, Any]] = field(default_factory=list)  # published numbers matching this board
    #: variant → role: "floor (random init)", "floor (ImageNet init)", "ceiling (oracle)" or "" (a method)
    roles: dict[str, str] = field(default_factory=dict)
    #: (floor variant, column) → its paired difference from the baseline (their own comparison family)
    floor_differences: pd.DataFrame = field(default_factory=pd.DataFrame)
    noise: dict[str, float] = field(default_factory=dict)  # column → downstream noise floor (std)

    def has_roles(self) -> bool:
        return any(self.roles.get(v) for v in self.variants)

    def is_floor(self, variant: str) -> bool:
        return self.roles.get(variant, "").startswith("floor") and variant != self.baseline

    def headline_columns(self) -> list[str]:
        """The columns their tasks declare as headline (all columns of a task that declares nothing)."""
        keep = [c for c in self.columns if self.column_info.get(c, {}).get("headline", True)]
        return keep or self.columns

    def higher_is_better(self, column: str) -> bool:
        return bool(self.column_info.get(column, {}).get("higher_is_better", True))


def _cell(board: Board, variant: str, column: str, ci: bool, bold: tuple[str, str]) -> str:
    if (variant, column) not in board.summary.index:
        return "—"
    row = board.summary.loc[(variant, column)]
    text = f"{100 * row['mean']:.1f}"
    if row["n"] > 1:
        text += f" ± {100 * row['std']:.1f}"
    if ci and row["ci95_low"] == row["ci95_low"]:
        text += f" [{100 * row['ci95_low']:.1f}, {100 * row['ci95_high']:.1f}]"
    if (variant, column) in board.best and len(board.variants) > 1:
        text = f"{bold[0]}{text}{bold[1]}"
    return text


def score_table(board: Board, columns: list[str], ci: bool = False, bold: tuple[str, str] = ("**", "**")) -> pd.DataFrame:
    rows = {}
    for variant in board.variants:
        row = {"role": board.roles.get(variant, "")} if board.has_roles() else {}
        row["runs"] = f"{board.finished.get(variant, 0)}/{board.planned.get(variant, 0)}"
        if not board.ranks.empty:
            row["mean rank"] = f"{board.ranks['mean rank'][variant]:.2f}" if variant in board.ranks.index else "—"
        row.update({column: _cell(board, variant, column, ci, bold) for column in columns})
        rows[variant] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("variant")


def difference_table(board: Board, columns: list[str], floors: bool = False) -> pd.DataFrame:
    """The methods' differences from the baseline, or (``floors``) the floors'."""
    frame = board.floor_differences if floors else board.differences
    rows = {}
    for variant in board.variants:
        if variant == board.baseline or board.is_floor(variant) != floors:
            continue
        row = {}
        for column in columns:
            if frame.empty or (variant, column) not in frame.index:
                row[column] = "—"
                continue
            d = frame.loc[(variant, column)]
            p = f"p{_p(d['p'])}, adj.{_p(d['p_adjusted'])}" if d["p"] == d["p"] else "p n/a"
            mark = " ✓" if _is_true(d.get("meaningful")) else ""
            row[column] = f"{100 * d['difference']:+.1f}{mark} ({p}, {int(d['pairs'])} seeds)"
        rows[variant] = row
    if board.noise:
        rows["noise floor (std)"] = {c: f"{100 * board.noise[c]:.1f}" if c in board.noise else "not measured"
                                     for c in columns}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("variant")


def meaningful_text(board: Board) -> str:
    """What ✓ means on this board, or how to get it."""
    if not board.noise:
        return ("No downstream noise floor was measured for this board, so no difference is called meaningful here: "
                "`benchmarks/bench_noise.py --floor <this folder>/noise_floor.json` measures it.")
    return (f"✓ = meaningful: adjusted p < {ALPHA}, |difference| above {NOISE_MULTIPLE:g}× the column's downstream noise "
            "floor (the last row: the std of one encoder's score over downstream seeds) and above the baseline's "
            "std over its seeds; a column without a measured floor gets no ✓.")


def _is_true(value: Any) -> bool:
    """A table cell that holds True (not False, NaN or pandas' NA)."""
    return value is not None and value is not pd.NA and value == value and bool(value)


def _p(value: float) -> str:
    """``=0.123`` or ``<0.001`` (to follow "p")."""
    return "=n/a" if value != value else ("<0.001" if value < 0.001 else f"={value:.3f}")


def ci_methods(board: Board) -> str:
    methods = sorted(set(board.summary["ci_method"])) if not board.summary.empty else []
    return "; ".join(methods) or "none"


def column_notes(board: Board, columns: list[str]) -> str:
    """Direction and chance level of the columns where they are not the usual (higher, none)."""
    lower = [c for c in columns if not board.higher_is_better(c)]
    chance = {c: board.column_info.get(c, {}).get("chance") for c in columns}
    parts = []
    if lower:
        parts.append("lower is better in " + ", ".join(f"`{c}`" for c in lower))
    shown = {f"{100 * v:.1f}" for v in chance.values() if v is not None}
    if shown:
        parts.append("chance level: " + ", ".join(f"`{c}` {100 * v:.1f}" for c, v in chance.items() if v is not None))
    return ("Columns: " + "; ".join(parts) + ".\n") if parts else ""


def superseded_table(board: Board) -> pd.DataFrame:
    return board.superseded[["variant", "seed", "state", "run_id", "differs from current"]]


def markdown(board: Board, full: bool, reported: str = "") -> str:
    if not board.variants:
        return f"# {board.title}\n\n(no runs yet)\n"
    columns = board.columns if full else board.headline_columns()
    parts = [f"# {board.title}\n",
             "Scores ×100: mean ± std over seeds" + (f" [95 % CI: {ci_methods(board)}]" if full else "")
             + "; **bold** = best in the column; `runs` = finished/planned seeds of the current configuration"
             + ("; `mean rank` = mean over the headline columns of the variant's rank (1 = best)" if not board.ranks.empty else "")
             + (f"; `role`: {ROLES_TEXT}" if board.has_roles() else "")
             + "." + ("" if full else " Headline columns; every column, with 95 % CIs, is in `leaderboard_full.md` and `leaderboard.csv`.") + "\n",
             column_notes(board, columns),
             score_table(board, columns, ci=full).to_markdown() + "\n"]
    if board.baseline and len(board.variants) > 1:
        methods = sorted(set(board.differences["p_method"])) if not board.differences.empty else []
        parts += [f"## Difference from the baseline `{board.baseline}`\n",
                  f"Mean difference over the seeds both ran, ×100; p: {'; '.join(methods) or 'none'}; adjusted over the "
                  f"{int(board.differences['p'].notna().sum())} comparisons of the board by {METHODS.get(board.adjustment, board.adjustment)}. "
                  + meaningful_text(board) + "\n",
                  difference_table(board, columns).to_markdown() + "\n"]
    if board.baseline and not board.floor_differences.empty:
        parts += [f"## Floors: what pretraining adds over `{board.baseline}`\n", FLOORS_TEXT + "\n",
                  difference_table(board, columns, floors=True).to_markdown() + "\n"]
    if not board.ranks.empty:
        parts += ["## Aggregate: mean rank across tasks\n",
                  "Rank of each variant in every headline column (1 = best, in the column's own direction; ties share "
                  "the average rank), averaged over all of them and per task. Only variants with a score in every "
                  "headline column are ranked.\n", board.ranks.to_markdown(floatfmt=".2f") + "\n"]
    if not board.ablation.empty:
        parts += ["## Ablation view\n", "What each variant changes relative to the baseline, and what a run costs.\n",
                  board.ablation.to_markdown() + "\n"]
    if not board.unfinished.empty:
        parts += ["## Runs not finished\n", board.unfinished.to_markdown(index=False) + "\n"]
    if not board.superseded.empty:
        parts += ["## Superseded runs\n", "Runs of an earlier configuration of a variant: not in its row or its statistics.\n",
                  superseded_table(board).to_markdown(index=False) + "\n"]
    if board.notes:
        parts += ["## Protocol notes\n", "\n".join(f"- {n}" for n in board.notes) + "\n"]
    if reported:
        parts.append(reported)
    return "\n".join(parts)


def long_csv(board: Board) -> str:
    """One row per variant × column: n, mean, std, ci95_low, ci95_high, ci_method, the paired
    difference from the baseline with its CI, p, p_method, p_adjusted, adjustment, best, and the
    column's declared direction, chance level and metric version."""
    differences = pd.concat([f for f in (board.differences, board.floor_differences) if not f.empty]) \
        if not board.floor_differences.empty else board.differences
    table = board.summary.join(differences, how="left").reset_index()
    table["adjustment"] = board.adjustment
    table["role"] = [board.roles.get(v, "") for v in table["variant"]]
    table["best"] = [(v, c) in board.best for v, c in zip(table["variant"], table["column"])]
    for key in ("higher_is_better", "chance", "metric_version"):
        table[key] = [board.column_info.get(c, {}).get(key) for c in table["column"]]
    return table.to_csv(index=False)


def _latex_escape(text: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", text).replace("±", r"$\pm$")


def latex(board: Board) -> str:
    columns = board.headline_columns()
    table = score_table(board, columns, bold=(r"\textbf{", "}"))
    header = " & ".join(["variant", *(_latex_escape(str(c)) for c in table.columns)]) + r" \\"
    lines = [r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\toprule", header, r"\midrule"]
    for variant, row in table.iterrows():
        cells = [_latex_escape(str(variant)), *(_latex_escape(str(v)) for v in row)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    note = ", floors (no pretraining) never bold" if any(board.is_floor(v) for v in board.variants) else ""
    return f"% {board.title}: scores x100, mean $\\pm$ std over seeds, bold = best{note}\n" + "\n".join(lines) + "\n"

