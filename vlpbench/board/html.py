"""A self-contained HTML page of a board: sortable table, a chart per task, loss curves per run.

No external scripts, styles or fonts: the page is one file that opens offline. Charts are inline
SVG drawn here: per task, one bar per variant and headline column with its 95 % CI (or ± std with
two seeds) as an error bar; per run, the per-term loss curves from ``history.json``. Clicking a
column header sorts the table (``#sort=<column index>`` in the address sorts on load, which the
browser test uses).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from vlpbench.board.render import Board, score_table

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

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
"""

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table.board { border-collapse: collapse; font-size: 0.9em; }
table.board th, table.board td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.board th { cursor: pointer; background: #f3f3f3; }
table.board td:first-child, table.board th:first-child { text-align: left; }
.best { font-weight: bold; }
.charts svg, .curves svg { margin: 0.5em 1em 0.5em 0; border: 1px solid #eee; }
.curves { display: flex; flex-wrap: wrap; }
.run { width: 380px; margin-bottom: 1em; font-size: 0.8em; }
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
        rows.append(f'<tr data-variant="{_esc(variant)}">{"".join(cells)}</tr>')
    return f'<table class="board"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def task_chart(board: Board, task: str, columns: list[str], width: int = 560, height: int = 260) -> str:
    """Grouped bars: one group per column of the task, one bar per variant, with error bars."""
    left, bottom, top = 40, 40, 20
    plot_w, plot_h = width - left - 10, height - bottom - top
    values = []
    for column in columns:
        for variant in board.variants:
            if (variant, column) in board.summary.index:
                row = board.summary.loc[(variant, column)]
                spread = 0.0
                values.append((column, variant, float(row["mean"]), float(spread)))
    high = max([1e-9] + [v + e for _, _, v, e in values])
    scale = plot_h / (math.ceil(high * 10) / 10 if high <= 1 else high)
    group_w = plot_w / max(1, len(columns))
    bar_w = group_w * 0.8 / max(1, len(board.variants))
    parts = [f'<svg class="chart" data-task="{_esc(task)}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="14" font-size="13">{_esc(task)} (×100, error bar: 95 % CI)</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>']
    for tick in range(0, 6):
        value = tick / 5 * (plot_h / scale)
        y = top + plot_h - value * scale
        parts.append(f'<text x="4" y="{y + 4:.1f}" font-size="10">{100 * value:.0f}</text>'
                     f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
    for g, column in enumerate(columns):
        parts.append(f'<text x="{left + g * group_w + 4:.1f}" y="{height - 22}" font-size="10">{_esc(column.split("/", 1)[-1])}</text>')
    for column, variant, mean, spread in values:
        g, v = columns.index(column), board.variants.index(variant)
        x = left + g * group_w + group_w * 0.1 + v * bar_w
        y = top + plot_h - mean * scale
        colour = PALETTE[v % len(PALETTE)]
        parts.append(f'<rect class="bar" data-variant="{_esc(variant)}" x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.9:.1f}" '
                     f'height="{mean * scale:.1f}" fill="{colour}"><title>{_esc(variant)}: {100 * mean:.1f}</title></rect>')
        if spread > 0:
            cx = x + bar_w * 0.45
            y0, y1 = top + plot_h - (mean - spread) * scale, top + plot_h - (mean + spread) * scale
            parts.append(f'<line class="errorbar" x1="{cx:.1f}" y1="{y0:.1f}" x2="{cx:.1f}" y2="{y1:.1f}" stroke="#000"/>')
    parts.append("</svg>")
    return "".join(parts)


def loss_curves(history: dict, title: str, width: int = 360, height: int = 200, points: int = 150) -> str:
    """One SVG with a polyline per loss term (each scaled to its own range), from ``history.json``."""
    steps = history.get("steps") or []
    terms = [k for k in dict.fromkeys(k for s in steps for k in s) if k not in ("step", "epoch", "lr") and not k.startswith("stats/")]
    parts = [f'<svg class="curve" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="4" y="12" font-size="11">{_esc(title)}</text>']
    legend = []
    for i, term in enumerate(terms):
        series = [(s["step"], s[term]) for s in steps if term in s and s[term] == s[term]]
        if len(series) < 2:
            continue
        stride = max(1, len(series) // points)
        series = series[::stride]
        xs, ys = [x for x, _ in series], [y for _, y in series]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        coords = " ".join(f"{10 + (x - x0) / max(1, x1 - x0) * (width - 20):.1f},"
                          f"{height - 10 - (y - y0) / (y1 - y0 or 1) * (height - 40):.1f}" for x, y in series)
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<polyline data-term="{_esc(term)}" fill="none" stroke="{colour}" points="{coords}"/>')
        legend.append(f'<span style="color:{colour}">{_esc(term)} ({y0:.3g}–{y1:.3g})</span>')
    parts.append("</svg>")
    return f'<div class="run">{"".join(parts)}<div class="legend">{" ".join(legend)}</div></div>'


def page(board: Board, run_folders: list[Path], reported_html: str = "") -> str:
    columns = board.headline_columns()
    tasks = list(dict.fromkeys(c.split("/", 1)[0] for c in columns))
    charts = "".join(task_chart(board, task, [c for c in columns if c.split("/", 1)[0] == task]) for task in tasks)
    legend = " ".join(f'<span style="color:{PALETTE[i % len(PALETTE)]}">■ {_esc(v)}</span>'
                      for i, v in enumerate(board.variants))
    curves = []
    for folder in run_folders:
        history_file = folder / "history.json"
        if history_file.is_file():
            curves.append(loss_curves(json.loads(history_file.read_text()), folder.name))
    unfinished = "".join(f"<li>{_esc(r.variant)} seed {_esc(r.seed)}: {_esc(r.state)} {_esc(r.error)}</li>"
                         for r in board.unfinished.itertuples())
    notes = "".join(f"<li>{_esc(n)}</li>" for n in board.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(board.title)}</title><style>{STYLE}</style></head>
<body>
<h1>{_esc(board.title)}</h1>
<p>Scores ×100, mean ± std over seeds; bold: best in the column; click a header to sort.</p>
{table_html(board, columns)}
{f"<h2>Runs not finished</h2><ul>{unfinished}</ul>" if unfinished else ""}
{f"<h2>Protocol notes</h2><ul>{notes}</ul>" if notes else ""}
<h2>Scores per task</h2><div class="legend">{legend}</div><div class="charts">{charts}</div>
<h2>Loss curves per run</h2><div class="curves">{"".join(curves)}</div>
{reported_html}
<script>{SCRIPT}</script>
</body></html>
"""
