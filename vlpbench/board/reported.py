"""Published numbers, labelled as *reported by the papers* — never as reproduced here.

They come from the plugins that implement the methods (the ``vlpbench_reported_results`` hook,
see :mod:`vlpbench.core.hookspecs`), each with its method, dataset, task, metric, protocol and
citation. A board shows an entry only when it has a column of that task measured on that dataset
(the dataset named in the column's protocol): the papers' numbers are on the real datasets, so a
SynthCXR board never shows them. They are listed beside the board, never ranked with its numbers.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from vlpbench.core.plugins import get_plugins

REQUIRED = ("method", "dataset", "task", "metric", "protocol", "values", "citation")


def reported_entries() -> list[dict[str, Any]]:
    """Every loaded plugin's published numbers (entries missing a field are skipped)."""
    hook = getattr(get_plugins().manager.hook, "vlpbench_reported_results", None)
    if hook is None:
        return []
    entries = []
    for batch in hook():
        entries += [dict(e) for e in batch or [] if isinstance(e, dict) and all(k in e for k in REQUIRED)]
    return entries


def _dataset_of(protocol: dict[str, Any]) -> str | None:
    data = protocol.get("dataset")
    return data.get("dataset") if isinstance(data, dict) else data


def matching_reported(protocols: dict[str, dict[str, Any]], columns: list[str],
                      entries: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The entries whose (task, dataset) the board measures."""
    measured = {(p.get("task"), _dataset_of(p)) for p in protocols.values() if isinstance(p, dict)}
    entries = reported_entries() if entries is None else entries
    return [e for e in entries if (e["task"], e["dataset"]) in measured]


def reported_table(entries: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for e in entries:
        values = " / ".join(f"{v}" for v in e["values"].values()) if isinstance(e["values"], dict) else str(e["values"])
        fractions = " / ".join(e["values"]) if isinstance(e["values"], dict) else ""
        rows.append({"method": e["method"], "dataset": e["dataset"], "task": e["task"],
                     "metric": f"{e['metric']} @ {fractions}" if fractions else e["metric"], "reported": values,
                     "protocol": e["protocol"], "citation": e["citation"]})
    return pd.DataFrame(rows)


def reported_markdown(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return ""
    return ("## Reported numbers (from the papers, not reproduced here)\n\n"
            "Published by the methods' authors under the protocol named; shown because this board measures the same "
            "task on the same dataset. Not ranked with the numbers above.\n\n"
            + reported_table(entries).to_markdown(index=False) + "\n")


def reported_html(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return ""
    return ("<h2>Reported numbers (from the papers, not reproduced here)</h2><p>Shown because this board measures the "
            "same task on the same dataset; never ranked with the board's numbers.</p>"
            + reported_table(entries).to_html(index=False, border=0, classes="reported"))
