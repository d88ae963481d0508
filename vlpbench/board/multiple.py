"""Adjusting p-values for the number of comparisons on a board.

A board compares every variant with the baseline in every column: dozens of tests, so some raw
p-values below 0.05 are expected by chance alone. The adjusted p-values control for that:

- ``holm`` (default): Holm's step-down method, controls the family-wise error rate (the chance of
  any false positive) — p₍ᵢ₎ sorted ascending, adjusted ``max_{j≤i} min(1, (m − j + 1)·p₍ⱼ₎)``;
- ``bh``: Benjamini–Hochberg, controls the false discovery rate (the expected share of false
  positives among the differences called significant) — ``min_{j≥i} min(1, m·p₍ⱼ₎ / j)``.

Missing p-values (NaN) are left out of ``m`` and stay NaN.
"""

from __future__ import annotations

import numpy as np

from vlpbench.core.errors import ConfigError

METHODS = {"holm": "Holm (family-wise error rate)", "bh": "Benjamini–Hochberg (false discovery rate)"}


def adjust(p: np.ndarray | list[float], method: str = "holm") -> np.ndarray:
    """Adjusted p-values in the order given."""
    if method not in METHODS:
        raise ConfigError(f"unknown p-value adjustment '{method}': use one of {', '.join(METHODS)}.")
    values = np.asarray(p, dtype=float)
    out = np.full(values.shape, np.nan)
    present = np.flatnonzero(~np.isnan(values))
    m = len(present)
    if m == 0:
        return out
    order = present[np.argsort(values[present], kind="stable")]
    ranked = values[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    else:
        adjusted = np.minimum.accumulate(np.minimum(1.0, m * ranked / np.arange(1, m + 1))[::-1])[::-1]
    out[order] = adjusted
    return out
