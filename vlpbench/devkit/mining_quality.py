"""How well does a positive miner find the false negatives? (``vlpbench mining-quality``)

On random batches of SynthCXR's pretraining split, every off-diagonal pair that a miner makes
(partly) positive or ignores is a *flagged* pair; a pair is a true false negative when the two
studies have identical sets of positive findings (optionally with the same laterality). Counts are
pooled over the batches, so precision and recall are not averages of per-batch ratios. Miners
are run in training mode in batch order, so stateful ones (FaNe's EMA) evolve as in pretraining.
Miners that need a trained text encoder (``source: learned``) cannot be judged before training and
are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vlpbench.core.build import build_component
from vlpbench.config.schema import ComponentSpec
from vlpbench.core.context import BuildContext
from vlpbench.core.errors import ConfigError
from vlpbench.core.plugins import get_registry
from vlpbench.devkit.testing import feature_inputs


@dataclass
class MiningQuality:
    miner: str
    flagged_pairs: int
    true_pairs: int
    hits: int

    @property
    def precision(self) -> float:
        return self.hits / self.flagged_pairs if self.flagged_pairs else float("nan")

    @property
    def recall(self) -> float:
        return self.hits / self.true_pairs if self.true_pairs else float("nan")


def truth_matrix(rows: torch.Tensor) -> torch.Tensor:
    """[B,B] bool: identical rows (finding sets), diagonal excluded."""
    same = (rows.unsqueeze(0) == rows.unsqueeze(1)).all(-1)
    return same & ~torch.eye(len(rows), dtype=torch.bool)


def evaluate_miner(spec: dict[str, Any], source: Any, batches: int, batch_size: int, seed: int,
                   with_laterality: bool = False) -> MiningQuality:

    component = ComponentSpec.model_validate(spec)
    if component.params().get("source") == "learned":
        raise ConfigError(f"positive_miner '{component.name}' with source: learned needs a trained text encoder; "
                          "judge its frozen source instead.")
    split = source.split("pretrain")
    context = BuildContext(corpus=list(split.reports), label_names=tuple(source.label_names), seed=seed)
    miner = build_component(get_registry(), "positive_miner", component, context)
    miner.train()
    labels = torch.from_numpy(np.asarray(split.labels)).float()
    truth_rows = torch.from_numpy(np.asarray(split.sides if with_laterality else split.labels))
    generator = torch.Generator().manual_seed(seed)
    flagged = true = hits = 0
    with torch.no_grad():
        for _ in range(batches):
            index = torch.randperm(len(labels), generator=generator)[:batch_size]
            inputs = feature_inputs(batch_size=len(index), index=index, labels=labels[index], seed=seed)
            positives = miner(inputs)
            off_diagonal = ~torch.eye(len(index), dtype=torch.bool)
            marked = (positives.affinity > 0) & off_diagonal
            if positives.ignore is not None:
                marked |= positives.ignore & off_diagonal
            truth = truth_matrix(truth_rows[index])
            flagged += int(marked.sum())
            true += int(truth.sum())
            hits += int((marked & truth).sum())
    return MiningQuality(component.name, flagged, true, hits)
