"""SynthCXR as a registered ``dataset`` component (pretraining pairs and downstream splits).

Every split's pixels live in the image store (:mod:`vlpbench.data.store`, under
``VLPBENCH_STORE_DIR``): rendered once, then mapped read-only by every run, rank and restart.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vlpbench.core.component import Component
from vlpbench.core.resources import check_fits, synthcxr_stored_bytes
from vlpbench.data.store import store_root
from vlpbench.data.synthcxr import FINDINGS, GENERATOR_VERSION, LOCAL_FINDINGS, PROMPTS, SynthCXRConfig, SynthCXRSplit, generate_stored


#: The largest split a run may ask for (validate refuses more; memory is checked again at run time).
MAX_SPLIT_SIZE = 2_000_000


@lru_cache(maxsize=16)
def _cached_split(split: str, n: int, config: SynthCXRConfig, store: str) -> SynthCXRSplit:
    return generate_stored(split, n, config, store)


class SynthCXRSource(Component["SynthCXRSource.Params"]):
    """Deterministic synthetic chest radiographs + reports; every split has disjoint patients."""

    provides = frozenset({"images", "reports", "sentences", "labels", "masks", "boxes", "prompts"})
    protocol_version = GENERATOR_VERSION
    label_names = FINDINGS
    local_findings = LOCAL_FINDINGS
    #: Parameters that change only the downstream splits: each split is generated from its own
    #: seed sequence, so the pretraining split (and a pretraining run) does not depend on them.
    downstream_only_params = frozenset({"train_size", "val_size", "test_size"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        seed: int = Field(0, description="generator seed (the data, not the training seed)")
        image_size: int = Field(64, ge=32, le=512)
        difficulty: float = Field(0.5, ge=0, le=1)
        normal_fraction: float = Field(0.4, ge=0, le=1)
        pretrain_size: int = Field(4000, ge=8, le=MAX_SPLIT_SIZE)
        train_size: int = Field(1500, ge=8, le=MAX_SPLIT_SIZE)
        val_size: int = Field(400, ge=8, le=MAX_SPLIT_SIZE)
        test_size: int = Field(800, ge=8, le=MAX_SPLIT_SIZE)

    def __init__(self, params: "SynthCXRSource.Params", context: Any = None) -> None:
        super().__init__(params, context)
        self.config = SynthCXRConfig(seed=params.seed, image_size=params.image_size,
                                     difficulty=params.difficulty, normal_fraction=params.normal_fraction)

    @property
    def image_size(self) -> int:
        return self.params.image_size

    def split(self, name: str) -> SynthCXRSplit:
        sizes = {"pretrain": self.params.pretrain_size, "train": self.params.train_size,
                 "val": self.params.val_size, "test": self.params.test_size}

        if name in sizes:
            check_fits(synthcxr_stored_bytes(sizes[name]), f"synthcxr's {name} split of {sizes[name]:,} studies "
                       "(reports and labels in memory; pixels in the image store)", f"lower data.{name}_size")
        return _cached_split(name, sizes[name], self.config, str(store_root()))

    def prompts(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """Zero-shot prompts per finding (positive and negative phrasings)."""
        return PROMPTS

    def statistics(self, split: str = "pretrain") -> dict[str, Any]:
        """Prevalence and the false-negative rate a batch of this split holds (for provenance)."""
        data = self.split(split)
        return {
            "split": split, "samples": len(data),
            "prevalence": {name: float(v) for name, v in zip(FINDINGS, data.labels.mean(0))},
            "normal_fraction": float((data.labels.sum(1) == 0).mean()),
            "false_negative_rate": data.false_negative_rate(),
            "false_negative_rate_with_laterality": data.false_negative_rate(with_laterality=True),
        }

    def protocol(self) -> dict[str, Any]:
        """What defines the data (enters every protocol hash)."""
        return {"dataset": "synthcxr", "generator_version": GENERATOR_VERSION, **self.params.model_dump(),
                "splits": "generated per split with disjoint patient IDs"}
