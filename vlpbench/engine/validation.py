"""Validation-mode evaluation for sweeps: tasks score the validation split, never the test split.

A sweep chooses hyperparameters by a downstream score, so that score must not come from the test
split the leaderboard reports. :class:`ValidationSource` wraps a data source so that every task
runs unchanged but one level down:

- the task's *test* split is the source's ``val`` split;
- its *validation* split (model selection, early stopping) is a held-out slice of ``train``
  (``HELD_OUT`` of it, drawn with a fixed seed);
- its *train* split is the rest of ``train``.

The source's protocol gains ``evaluation: validation``, so every protocol hash differs from the
test-split one and the leaderboard never puts these numbers in a column with test numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vlpbench.core.capabilities import Subsettable, offers
from vlpbench.core.errors import DataError

HELD_OUT = 0.2
SEED = 0


def subset_split(split: Any, indices: np.ndarray) -> Any:
    """The samples ``indices`` of a split (its own ``subset`` method, or a SynthCXR-style dataclass)."""
    if offers(split, Subsettable):
        return split.subset(indices)
    if not dataclasses.is_dataclass(split):
        raise DataError(f"validation-mode evaluation needs to subset the train split, but {type(split).__name__} "
                        "has no subset(indices) method; add one to the dataset component.")
    n = len(split)
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(split):
        value = getattr(split, f.name)
        if f.name == "boxes" and isinstance(value, np.ndarray) and value.ndim == 2:
            # boxes carry their sample index in column 0: keep those of the subset, renumbered
            position = np.full(n, -1)
            position[indices] = np.arange(len(indices))
            kept = value[np.isin(value[:, 0].astype(int), indices)].copy()
            kept[:, 0] = position[kept[:, 0].astype(int)]
            changes[f.name] = kept
        elif isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n:
            changes[f.name] = value[indices]
        elif isinstance(value, list) and len(value) == n:
            changes[f.name] = [value[i] for i in indices]
    return dataclasses.replace(split, **changes)


class ValidationSource:
    """A data source whose test split is the validation split (see the module docstring)."""

    evaluation = "validation"

    def __init__(self, source: Any) -> None:
        self._source = source
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def _train_parts(self) -> tuple[Any, Any]:
        if "train" not in self._cache:
            train = self._source.split("train")
            order = np.random.default_rng(SEED).permutation(len(train))
            cut = max(1, int(round(HELD_OUT * len(train))))
            self._cache["val"] = subset_split(train, np.sort(order[:cut]))
            self._cache["train"] = subset_split(train, np.sort(order[cut:]))
        return self._cache["train"], self._cache["val"]

    def split(self, name: str) -> Any:
        if name == "test":
            return self._source.split("val")
        if name == "val":
            return self._train_parts()[1]
        if name == "train":
            return self._train_parts()[0]
        return self._source.split(name)

    def protocol(self) -> dict[str, Any]:
        return {**self._source.protocol(), "evaluation": "validation",
                "evaluation_splits": f"test := val; val := {HELD_OUT:g} of train (seed {SEED}); train := the rest"}
