"""Statistics of a board: per-variant scores with CIs over test cases and seeds, best per column
(in the column's own direction), paired differences with permutation p-values adjusted for the
number of comparisons, and the mean-rank aggregate.

Where a column's runs saved their per-test-case outputs (``samples.npz``), the interval is the
two-level bootstrap of :mod:`vlpbench.board.resample` (seeds × test cases) and the p-value a paired
permutation test over test cases. Where they did not (runs made before samples were saved, or a
third-party task that saves none), the interval is Student's t over seeds
(``mean ± t_{0.975, n−1} · std / √n``, none with one seed) and the p-value a paired t-test over
the seeds both variants ran (none with fewer than two pairs); ``ci_method`` / ``p_method`` say
which. P-values are adjusted over every comparison of the board (:mod:`vlpbench.board.multiple`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from vlpbench.board import resample
from vlpbench.board.multiple import adjust
from vlpbench.engine.samples import FILE, read_samples

SUMMARY_COLUMNS = ["n", "mean", "std", "ci95_low", "ci95_high", "ci_method"]
DIFFERENCE_COLUMNS = ["pairs", "difference", "diff_ci95_low", "diff_ci95_high", "p", "p_method", "p_adjusted",
                      "adjustment"]


def t_quantile(n: int) -> float:
    return float(scipy_stats.t.ppf(0.975, n - 1)) if n >= 2 else float("nan")


class SampleStore:
    """Per-run samples, read once per run folder."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[str, dict[str, np.ndarray]]] = {}

    def get(self, path: str, key: str) -> dict[str, np.ndarray] | None:
        if path not in self._runs:
            self._runs[path] = read_samples(Path(path) / FILE)
        return self._runs[path].get(key)


def _seed_samples(part: pd.DataFrame, store: SampleStore) -> tuple[str, list[dict[str, np.ndarray]]] | None:
    """(kind, samples per seed in seed order) when every run of ``part`` has samples of one kind."""
    kinds = set(part["samples"].fillna(""))
    if len(kinds) != 1 or "" in kinds:
        return None
    kind = kinds.pop()
    arrays = [store.get(path, key) for path, key in zip(part["path"], part["key"])]
    if any(a is None for a in arrays):
        return None
    sizes = {resample.cases(kind, a) for a in arrays}
    return (kind, arrays) if len(sizes) == 1 else None


def summarise(scores: pd.DataFrame, store: SampleStore | None = None, resamples: int = 1000) -> pd.DataFrame:
    """(variant, column) → n (seeds), mean, std (sample, over seeds), 95 % CI bounds, CI method."""
    store = store or SampleStore()
    rows = []
    for (variant, column), part in scores.sort_values("seed").groupby(["variant", "column"], sort=False):
        n, mean = len(part), float(part["value"].mean())
        std = float(part["value"].std()) if n > 1 else float("nan")
        found = _seed_samples(part, store)
        if found is not None:
            low, high = resample.bootstrap_ci(found[0], found[1], resamples=resamples)
            method = "bootstrap over test cases" + (f" and {n} seeds" if n > 1 else "")
        elif n >= 2:
            half = t_quantile(n) * std / math.sqrt(n)
            low, high, method = mean - half, mean + half, "Student's t over seeds"
        else:
            low = high = float("nan")
            method = "none (one seed, no per-case samples)"
        rows.append({"variant": variant, "column": column, "n": n, "mean": mean, "std": std,
                     "ci95_low": low, "ci95_high": high, "ci_method": method})
    return pd.DataFrame(rows, columns=["variant", "column", *SUMMARY_COLUMNS]).set_index(["variant", "column"])


def best_per_column(summary: pd.DataFrame, lower_is_better: set[str] | None = None) -> set[tuple[str, str]]:
    """(variant, column) of the best mean of each column (ties all marked), in the column's direction."""
    best: set[tuple[str, str]] = set()
    for column, part in summary.groupby(level="column"):
        means = part["mean"][np.isfinite(part["mean"])]
        if means.empty:
            continue
        top = means.min() if column in (lower_is_better or set()) else means.max()
        best |= {(variant, column) for (variant, _), value in means.items() if np.isclose(value, top)}
    return best


def paired_differences(scores: pd.DataFrame, baseline: str, store: SampleStore | None = None,
                       adjustment: str = "holm", resamples: int = 1000, permutations: int = 1000) -> pd.DataFrame:
    """(variant, column) → seed pairs, mean difference from ``baseline`` over the shared seeds, its CI,
    raw p, the p-value method and the p-value adjusted over every comparison in the table."""
    store = store or SampleStore()
    rows = []
    for column, part in scores.groupby("column", sort=False):
        if baseline not in set(part["variant"]):
            continue
        base = part[part["variant"] == baseline].set_index("seed")
        for variant, mine in part.groupby("variant", sort=False):
            if variant == baseline:
                continue
            mine = mine.set_index("seed")
            shared = sorted(set(mine.index) & set(base.index))
            row = {"variant": variant, "column": column, "pairs": len(shared), "difference": float("nan"),
                   "diff_ci95_low": float("nan"), "diff_ci95_high": float("nan"), "p": float("nan"),
                   "p_method": "none"}
            if shared:
                a, b = mine.loc[shared].reset_index(), base.loc[shared].reset_index()
                row["difference"] = float((a["value"] - b["value"]).mean())
                found_a, found_b = _seed_samples(a, store), _seed_samples(b, store)
                if (found_a and found_b and found_a[0] == found_b[0]
                        and resample.cases(found_a[0], found_a[1][0]) == resample.cases(found_b[0], found_b[1][0])
                        and _same_targets(found_a[0], found_a[1][0], found_b[1][0])):
                    test = resample.paired_test(found_a[0], found_a[1], found_b[1], resamples, permutations)
                    row.update({k: test[k] for k in ("diff_ci95_low", "diff_ci95_high", "p")},
                               p_method="paired permutation over test cases")
                elif len(shared) >= 2 and (a["value"] - b["value"]).std() > 0:
                    row["p"] = float(scipy_stats.ttest_rel(a["value"], b["value"]).pvalue)
                    row["p_method"] = "paired t-test over seeds"
            rows.append(row)
    table = pd.DataFrame(rows, columns=["variant", "column", *DIFFERENCE_COLUMNS[:6]])
    table["p_adjusted"] = adjust(table["p"].to_numpy(), adjustment) if len(table) else []
    table["adjustment"] = adjustment
    return table.set_index(["variant", "column"])


def _same_targets(kind: str, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Whether two runs' samples are of the same test cases (their targets agree)."""
    for key in ("labels", "gt_count"):
        if key in a or key in b:
            return key in a and key in b and np.array_equal(a[key], b[key])
    return True


def mean_ranks(summary: pd.DataFrame, columns: list[str], lower_is_better: set[str] | None = None) -> pd.DataFrame:
    """variant → mean rank over ``columns`` (1 = best; ties share the average rank), the number of
    columns it was ranked in, and its rank per task (mean over the task's columns), as mteb ranks
    models across tasks. Only variants present in every column are ranked."""
    ranks: dict[str, pd.Series] = {}
    for column in columns:
        part = summary.xs(column, level="column")["mean"] if column in summary.index.get_level_values("column") else None
        if part is None or part.empty:
            continue
        ascending = column in (lower_is_better or set())
        ranks[column] = part.rank(ascending=ascending, method="average")
    if not ranks:
        return pd.DataFrame()
    table = pd.DataFrame(ranks)
    complete = table.dropna()
    out = pd.DataFrame({"mean rank": complete.mean(1), "columns": complete.notna().sum(1)})
    for task in dict.fromkeys(c.split("/", 1)[0] for c in complete.columns):
        out[task] = complete[[c for c in complete.columns if c.split("/", 1)[0] == task]].mean(1)
    return out.sort_values("mean rank")
