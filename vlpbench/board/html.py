"""A self-contained HTML page of a board: sortable table, a chart per task, the differences from the
baseline with raw and adjusted p-values, the mean-rank and ablation views, loss curves per run.

No external scripts, styles or fonts: the page is one file that opens offline, and it fits a
1,400 px window (the score table scrolls sideways inside the page with its variant column fixed;
charts and curves wrap). Charts are inline SVG drawn here: per task, one point per variant and
headline column with its 95 % CI as an error bar, on an axis that spans the data (not from 0, so
the differences the board is about are visible), with the task's declared chance level as a
dashed line; per run, one small panel per loss term on its own axis (raw values faint, an
exponential moving average on top), so a term of 1e-5 is never drawn as large as the total.
Clicking a column header sorts the table (``#sort=<column index>`` in the address sorts on load,
which the browser test uses).
"""

from __future__ import annotations

import html
import json

from vlpbench.engine.files import CorruptFile, read_json
import math
from pathlib import Path

import pandas as pd

from vlpbench.board.multiple import METHODS
from vlpbench.board.render import (FLOORS_TEXT, ROLES_TEXT, Board, ci_methods, difference_table, score_table,
                                   superseded_table)

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
SMOOTHING = 0.9  # EMA weight of the loss curves' smoothed line

SCRIPT = """
function sortTable(table, column, descending) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const key = r => { const t = r.cells[column].innerText.trim(); const n = parseFloat(t); return isNaN(n) ? t : n; };
  rows.sort((a, b) => { const x = key(a), y = key(b); const c = (x > y) - (x < y); return descending ? -c : c; });
  rows.forEach(r => body.appendChild(r));
  table.dataset.sorted = column + (descending ? ":desc" : ":asc");
}
document.querySelectorAll("table.board th").forEach((th, i) => {
  th.addEventListener("click", () => {
    const table = th.closest("table");
    const descending = table.dataset.sorted !== i + ":desc";
    sortTable(table, i, descending);
  });
});
const match = location.hash.match(/sort=(\\d+)/);
if (match) { sortTable(document.querySelector("table.board"), parseInt(match[1]), true); }
document.body.dataset.scrollWidth = document.documentElement.scrollWidth;  // read by the browser test
"""

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1340px; }
.scroll { overflow-x: auto; max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; }
table th, table td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
table th { background: #f3f3f3; max-width: 10em; white-space: normal; overflow-wrap: anywhere; vertical-align: bottom; }
table.board th { cursor: pointer; }
table.board td { white-space: nowrap; }
table td:first-child, table th:first-child { text-align: left; }
table.board td:first-child, table.board th:first-child { position: sticky; left: 0; background: #fff; z-index: 1;
  box-shadow: 1px 0 0 #ccc; }
table.board th:first-child { background: #f3f3f3; }
table.wide td { white-space: normal; max-width: 28em; }
.best { font-weight: bold; }
.charts, .curves { display: flex; flex-wrap: wrap; gap: 0.5em; }
.charts svg { border: 1px solid #eee; }
.run { border: 1px solid #eee; padding: 4px; font-size: 0.8em; }
.panels { display: flex; flex-wrap: wrap; gap: 2px; }
.legend span { margin-right: 1em; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text))


def table_html(board: Board, columns: list[str]) -> str:
    table = score_table(board, columns, ci=False, bold=("", ""))
    head = "".join(f"<th>{_esc(c)}</th>" for c in ["variant", *table.columns])
    rows = []
    for variant, row in table.iterrows():
        cells = [f"<td>{_esc(variant)}</td>"]
        for column, value in row.items():
            best = (variant, column) in board.best and len(board.variants) > 1
            cells.append(f'<td class="{"best" if best else ""}">{_esc(value)}</td>')
        role = f' data-role="{_esc(board.roles[variant])}"' if board.roles.get(variant) else ""
        rows.append(f'<tr data-variant="{_esc(variant)}"{role}>{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="board"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def frame_html(frame: pd.DataFrame, css: str = "", index: bool = True) -> str:
    if frame.empty:
        return ""
    return f'<div class="scroll">{frame.to_html(border=0, classes=css, index=index, float_format=lambda v: f"{v:.2f}")}</div>'


def nice_range(low: float, high: float) -> tuple[float, float, float]:
    """An axis range around [low, high] with round ticks: (start, stop, step)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return 0.0, 1.0, 0.2
    span = max(high - low, 1e-3)
    step = 10 ** math.floor(math.log10(span / 4))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 6:
            step *= factor
            break
    start, stop = math.floor(low / step) * step, math.ceil(high / step) * step
    return start, max(stop, start + step), step


def task_chart(board: Board, task: str, columns: list[str], width: int | None = None, height: int = 250) -> str:
    """Per column of the task, one point per variant with its 95 % CI, on an axis spanning the data
    and the chance level (dashed), never forced to start at 0."""
    width = width or min(1300, max(440, 60 + 90 * len(columns)))  # room for every column's label
    left, bottom, top, right = 46, 46, 24, 10
    plot_w, plot_h = width - left - right, height - bottom - top
    values = []
    for column in columns:
        for variant in board.variants:
            if (variant, column) in board.summary.index:
                row = board.summary.loc[(variant, column)]
                low = row["ci95_low"] if row["ci95_low"] == row["ci95_low"] else row["mean"]
                high = row["ci95_high"] if row["ci95_high"] == row["ci95_high"] else row["mean"]
                values.append((column, variant, float(row["mean"]), float(low), float(high)))
    chances = {c: board.column_info.get(c, {}).get("chance") for c in columns}
    known = [v for _, _, m, lo, hi in values for v in (m, lo, hi)] + [c for c in chances.values() if c is not None]
    start, stop, step = nice_range(min(known, default=0.0), max(known, default=1.0))
    y = lambda v: top + plot_h - (v - start) / (stop - start) * plot_h  # noqa: E731
    direction = "higher is better" if all(board.higher_is_better(c) for c in columns) else "see columns for direction"
    parts = [f'<svg class="chart" data-task="{_esc(task)}" data-axis="{start:.4g}:{stop:.4g}" width="{width}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="14" font-size="12">{_esc(task)} (×100; bar: 95 % CI; {direction})</text>']
    tick = start
    while tick <= stop + step / 2:
        parts.append(f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" font-size="10" text-anchor="end">{100 * tick:.{max(0, -math.floor(math.log10(100 * step)))}f}</text>'
                     f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" y2="{y(tick):.1f}" stroke="#eee"/>')
        tick += step
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>')
    group_w = plot_w / max(1, len(columns))
    slot = group_w * 0.8 / max(1, len(board.variants))
    for g, column in enumerate(columns):
        x0 = left + g * group_w
        parts.append(f'<text x="{x0 + group_w / 2:.1f}" y="{height - 28}" font-size="10" text-anchor="middle">'
                     f'{_esc(column.split("/", 1)[-1])}</text>')
        if chances[column] is not None:
            parts.append(f'<line class="chance" x1="{x0 + 2:.1f}" y1="{y(chances[column]):.1f}" x2="{x0 + group_w - 2:.1f}" '
                         f'y2="{y(chances[column]):.1f}" stroke="#900" stroke-dasharray="4 3"><title>chance level '
                         f'{100 * chances[column]:.1f}</title></line>')
    for column, variant, mean, low, high in values:
        g, v = columns.index(column), board.variants.index(variant)
        cx = left + g * group_w + group_w * 0.1 + (v + 0.5) * slot
        colour = PALETTE[v % len(PALETTE)]
        parts.append(f'<line class="errorbar" x1="{cx:.1f}" y1="{y(low):.1f}" x2="{cx:.1f}" y2="{y(high):.1f}" '
                     f'stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<circle class="point" data-variant="{_esc(variant)}" cx="{cx:.1f}" cy="{y(mean):.1f}" r="4" '
                     f'fill="{colour}"><title>{_esc(variant)}: {100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}]</title></circle>')
    if any(c is not None for c in chances.values()):
        parts.append(f'<text x="{left}" y="{height - 8}" font-size="10" fill="#900">- - chance level</text>')
    parts.append("</svg>")
    return "".join(parts)


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard's smoothing)."""
    out, average = [], 0.0
    for i, value in enumerate(values, 1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight ** i))
    return out


def loss_curves(history: dict, title: str, width: int = 200, height: int = 120, points: int = 150) -> str:
    """One small panel per loss term, each on its own labelled axis, raw (faint) and smoothed."""
    steps = history.get("steps") or []
    terms = [k for k in dict.fromkeys(k for s in steps for k in s) if k not in ("step", "epoch", "lr") and not k.startswith("stats/")]
    panels = []
    for i, term in enumerate(terms):
        series = [(s["step"], s[term]) for s in steps if term in s and s[term] == s[term]]
        if len(series) < 2:
            continue
        xs, ys = [x for x, _ in series], [y for _, y in series]
        smoothed = smooth(ys)
        stride = max(1, len(series) // points)
        x0, x1 = min(xs), max(xs)
        lo, hi = min(ys), max(ys)
        pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
        left, top, bottom = 44, 16, 18
        pw, ph = width - left - 6, height - top - bottom
        px = lambda x: left + (x - x0) / max(1, x1 - x0) * pw  # noqa: E731
        py = lambda v: top + ph - (v - lo) / (hi - lo) * ph  # noqa: E731
        raw = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in series[::stride])
        ema = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in list(zip(xs, smoothed))[::stride])
        colour = PALETTE[i % len(PALETTE)]
        panels.append(
            f'<svg class="curve" data-term="{_esc(term)}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
            f'<text x="{left}" y="11" font-size="10">{_esc(term)}</text>'
            f'<text x="{left - 3}" y="{top + 8}" font-size="9" text-anchor="end">{hi:.3g}</text>'
            f'<text x="{left - 3}" y="{top + ph}" font-size="9" text-anchor="end">{lo:.3g}</text>'
            f'<text x="{left}" y="{height - 4}" font-size="9">step {x0}</text>'
            f'<text x="{left + pw}" y="{height - 4}" font-size="9" text-anchor="end">{x1}</text>'
            f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ddd"/>'
            f'<polyline fill="none" stroke="{colour}" stroke-opacity="0.25" points="{raw}"/>'
            f'<polyline data-term="{_esc(term)}" fill="none" stroke="{colour}" stroke-width="1.5" points="{ema}"/></svg>')
    return f'<div class="run"><div>{_esc(title)}</div><div class="panels">{"".join(panels)}</div></div>'


def page(board: Board, run_folders: list[Path], reported_html: str = "") -> str:
    columns = board.headline_columns()
    tasks = list(dict.fromkeys(c.split("/", 1)[0] for c in columns))
    charts = "".join(task_chart(board, task, [c for c in columns if c.split("/", 1)[0] == task]) for task in tasks)
    legend = " ".join(f'<span style="color:{PALETTE[i % len(PALETTE)]}">● {_esc(v)}</span>'
                      for i, v in enumerate(board.variants))
    curves = []
    for folder in run_folders:
        history_file = folder / "history.json"
        if history_file.is_file():
            try:  # a loss curve is decoration: an unreadable history.json leaves it out, never the board
                curves.append(loss_curves(read_json(history_file, expect=dict), folder.name))
            except (CorruptFile, AttributeError, KeyError, TypeError, ValueError):
                continue
    unfinished = "".join(f"<li>{_esc(r.variant)} seed {_esc(r.seed)}: {_esc(r.state)} {_esc(r.error)}</li>"
                         for r in board.unfinished.itertuples())
    notes = "".join(f"<li>{_esc(n)}</li>" for n in board.notes)
    differences = ""
    if board.baseline and len(board.variants) > 1 and not board.differences.empty:
        methods = "; ".join(sorted(set(board.differences["p_method"])))
        differences = (f"<h2>Difference from the baseline <code>{_esc(board.baseline)}</code></h2>"
                       f"<p>×100, mean over shared seeds; p ({_esc(methods)}) raw and adjusted over the "
                       f"{int(board.differences['p'].notna().sum())} comparisons by {_esc(METHODS.get(board.adjustment, board.adjustment))}.</p>"
                       + frame_html(difference_table(board, columns), "differences wide"))
    if board.baseline and not board.floor_differences.empty:
        differences += (f"<h2>Floors: what pretraining adds over <code>{_esc(board.baseline)}</code></h2>"
                        f"<p>{_esc(FLOORS_TEXT)}</p>" + frame_html(difference_table(board, columns, floors=True),
                                                                 "differences wide"))
    ranks = (f"<h2>Aggregate: mean rank across tasks</h2><p>1 = best, in each column's own direction.</p>"
             + frame_html(board.ranks, "ranks")) if not board.ranks.empty else ""
    ablation = ("<h2>Ablation view</h2><p>What each variant changes relative to the baseline, and what a run costs.</p>"
                + frame_html(board.ablation, "ablation wide")) if not board.ablation.empty else ""
    superseded = ("<h2>Superseded runs</h2><p>Runs of an earlier configuration of a variant: not in its row or statistics.</p>"
                  + frame_html(superseded_table(board), "superseded wide", index=False)) if not board.superseded.empty else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{_esc(board.title)}</title><style>{STYLE}</style></head>
<body>
<h1>{_esc(board.title)}</h1>
<p>Scores ×100, mean ± std over seeds; bold: best in the column; runs: finished/planned seeds of the current
configuration; 95 % CIs ({_esc(ci_methods(board))}) in the charts and in leaderboard_full.md; click a header to sort.{
f" Role: {_esc(ROLES_TEXT)}." if board.has_roles() else ""}</p>
{table_html(board, columns)}
{f"<h2>Runs not finished</h2><ul>{unfinished}</ul>" if unfinished else ""}
{f"<h2>Protocol notes</h2><ul>{notes}</ul>" if notes else ""}
<h2>Scores per task</h2><div class="legend">{legend}</div><div class="charts">{charts}</div>
{differences}
{ranks}
{ablation}
{superseded}
<h2>Loss curves per run</h2><p>One panel per loss term on its own axis; faint: raw, solid: moving average.</p>
<div class="curves">{"".join(curves)}</div>
{reported_html}
<script>{SCRIPT}</script>
</body></html>
"""
