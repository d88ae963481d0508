"""Columns never mix protocols: a column measured under several protocols is split, and the board
says what differs between them."""

from __future__ import annotations

from typing import Any

import pandas as pd

from vlpbench.board.ablation import flatten


def protocol_difference(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two protocol definitions."""
    fa, fb = ({k: v for k, v in flatten(p).items() if k.rsplit(".", 1)[-1] != "hash"} for p in (a, b))
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))


def split_mixed_columns(scores: pd.DataFrame, protocols: dict[str, dict[str, Any]]) -> tuple[pd.DataFrame, list[str]]:
    """Rename columns that mix protocols to ``column [protocol abcd1234]``; notes on why."""
    scores = scores.copy()
    notes: list[str] = []
    counts = scores.groupby("column")["protocol"].nunique()
    for column in counts[counts > 1].index:
        hashes = sorted(scores.loc[scores["column"] == column, "protocol"].unique())
        mask = scores["column"] == column
        scores.loc[mask, "column"] = column + " [protocol " + scores.loc[mask, "protocol"].str[:8] + "]"
        first = protocols.get(hashes[0], {})
        for other in hashes[1:]:
            keys = protocol_difference(first, protocols.get(other, {}))
            notes.append(f"`{column}` is split: protocols {hashes[0][:8]} and {other[:8]} differ in "
                         f"{', '.join(keys) or 'their definition'}, so their numbers are not ranked together.")
    return scores, notes
