"""COCO's greedy matching, vectorised over the IoU thresholds, equals COCO's per-threshold loop."""

from __future__ import annotations

import numpy as np
import pytest

from vlpbench.tasks.detection import IOU_THRESHOLDS, greedy_matches


def reference(iou: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """COCOeval's loop: per threshold, detections in score order take the best unmatched box
    (``iou < best`` skips, so an equal IoU later in the list wins)."""
    hits = np.zeros((iou.shape[0], len(thresholds)), dtype=bool)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(iou.shape[1], dtype=bool)
        for d in range(iou.shape[0]):
            best, chosen = min(threshold, 1 - 1e-10), -1
            for g in range(iou.shape[1]):
                if taken[g] or iou[d, g] < best:
                    continue
                best, chosen = iou[d, g], g
            if chosen >= 0:
                taken[chosen], hits[d, t] = True, True
    return hits


@pytest.mark.parametrize("seed", range(20))
def test_vectorised_matching_equals_the_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    detections, boxes = rng.integers(0, 12), rng.integers(0, 5)
    iou = rng.choice([0.0, 0.3, 0.45, 0.5, 0.62, 0.7, 0.8, 1.0], size=(detections, boxes))  # many ties
    assert np.array_equal(greedy_matches(iou, IOU_THRESHOLDS), reference(iou, IOU_THRESHOLDS))
