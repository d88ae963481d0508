"""SynthCXR's vocabulary: the findings, the splits, laterality codes, lung zones and lobes.

Shared by the sampler (:mod:`.studies`), the renderer (:mod:`.render`) and the report writer
(:mod:`.reports`); the package re-exports every name, so ``from vlpbench.data.synthcxr import
FINDINGS`` stays the way to reach them.
"""

from __future__ import annotations

FINDINGS: tuple[str, ...] = (
    "atelectasis", "cardiomegaly", "consolidation", "edema",
    "pleural_effusion", "pneumothorax", "nodule", "support_devices",
)
#: Findings with a segmentation mask and a bounding box.
LOCAL_FINDINGS: tuple[str, ...] = ("atelectasis", "consolidation", "pleural_effusion", "pneumothorax", "nodule")
#: Prevalence of each finding among abnormal studies (before the at-least-one rule).
PREVALENCE = {"atelectasis": 0.22, "cardiomegaly": 0.28, "consolidation": 0.22, "edema": 0.18,
              "pleural_effusion": 0.28, "pneumothorax": 0.12, "nodule": 0.15, "support_devices": 0.16}

SPLITS = {"pretrain": 0, "train": 1, "val": 2, "test": 3}
#: Laterality codes of ``SynthCXRSplit.sides``.
ABSENT, RIGHT, LEFT, BILATERAL = 0, 1, 2, 3
SIDE_WORD = {RIGHT: "right", LEFT: "left"}
ZONES = ("upper", "mid", "lower")
LOBES = {RIGHT: ("upper", "middle", "lower"), LEFT: ("upper", "lower")}
