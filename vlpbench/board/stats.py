"""Statistics over seeds: mean, std, 95 % confidence interval, best per column, paired differences.

All scores are "higher is better" (AUROC, Dice, mAP, recall, accuracy). The confidence interval is
Student's t: ``mean ± t_{0.975, n−1} · std / √n`` (none with one seed). A variant's difference from
the baseline is paired by seed — only seeds both have count — and tested with a paired t-test
(scipy ``ttest_rel``); with fewer than two pairs, or no spread in the differences, there is no p.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats


def t_quantile(n: int) -> float:
    return float(scipy_stats.t.ppf(0.975, n - 1)) if n >= 2 else float("nan")


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """(variant, column) → n, mean, std (sample), ci95 half-width."""
    grouped = scores.groupby(["variant", "column"])["value"]
    table = grouped.agg(n="count", mean="mean", std="std")
    table["std"] = table["std"].fillna(0.0).where(table["n"] > 1, float("nan"))
    table["ci95"] = [t_quantile(n) * s / math.sqrt(n) if n >= 2 else float("nan")
                     for n, s in zip(table["n"], table["std"])]
    return table


def best_per_column(summary: pd.DataFrame) -> set[tuple[str, str]]:
    """(variant, column) of the highest mean of each column (ties all marked)."""
    best: set[tuple[str, str]] = set()
    for column, part in summary.groupby(level="column"):
        top = part["mean"].max()
        best |= {(variant, column) for (variant, _), value in part["mean"].items() if np.isclose(value, top)}
    return best


def paired_differences(scores: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """(variant, column) → pairs, mean difference from ``baseline`` over shared seeds, p (paired t)."""
    rows = []
    for column, part in scores.groupby("column"):
        wide = part.pivot_table(index="seed", columns="variant", values="value", aggfunc="mean")
        if baseline not in wide:
            continue
        for variant in wide.columns:
            if variant == baseline:
                continue
            both = wide[[variant, baseline]].dropna()
            differences = both[variant] - both[baseline]
            p = float("nan")
            if len(both) >= 2 and differences.std() > 0:
                p = float(scipy_stats.ttest_rel(both[variant], both[baseline]).pvalue)
            rows.append({"variant": variant, "column": column, "pairs": len(both),
                         "difference": float(differences.mean()) if len(both) else float("nan"), "p": p})
    return pd.DataFrame(rows, columns=["variant", "column", "pairs", "difference", "p"]).set_index(["variant", "column"])
