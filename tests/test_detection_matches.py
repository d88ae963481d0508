"""COCO's greedy matching, vectorised over the IoU thresholds, equals COCO's per-threshold loop."""

from __future__ import annotations

import numpy as np
import pytest

from vlpbench.tasks.detection import IOU_THRESHOLDS, coco_backend, greedy_matches


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


def test_the_fast_coco_backend_gives_pycocotools_numbers_in_every_field() -> None:
    """The detection task scores with ``faster_coco_eval`` when it is installed (it is a dependency);
    on ragged predictions (images without predictions or without boxes, several classes, tied
    scores) every field of torchmetrics' result equals the ``pycocotools`` backend's."""
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    assert coco_backend() == "faster_coco_eval"
    rng = np.random.default_rng(0)

    def boxes(count: int) -> torch.Tensor:
        corner = rng.uniform(0, 48, size=(count, 2))
        return torch.tensor(np.concatenate([corner, corner + rng.uniform(2, 16, size=(count, 2))], 1), dtype=torch.float32)

    predictions, truth = [], []
    for image in range(60):
        shown, found = int(rng.integers(0, 4)) if image % 7 else 0, int(rng.integers(0, 9)) if image % 5 else 0
        truth.append({"boxes": boxes(shown), "labels": torch.from_numpy(rng.integers(0, 3, shown))})
        scores = torch.from_numpy(rng.choice([0.2, 0.5, 0.5, 0.9], size=found)).float()  # ties
        guessed = {"boxes": boxes(found), "scores": scores, "labels": torch.from_numpy(rng.integers(0, 3, found))}
        near = min(shown, found)  # some predictions near the true boxes: overlaps at every IoU threshold
        guessed["boxes"][:near] = truth[-1]["boxes"][:near] + torch.from_numpy(rng.normal(0, 1.5, (near, 4))).float()
        guessed["labels"][:near] = truth[-1]["labels"][:near]
        predictions.append(guessed)
    results = {}
    for backend in ("pycocotools", "faster_coco_eval"):
        metric = MeanAveragePrecision(box_format="xyxy", iou_thresholds=IOU_THRESHOLDS, backend=backend)
        metric.update(predictions, truth)
        results[backend] = metric.compute()
    slow, fast = results["pycocotools"], results["faster_coco_eval"]
    assert set(slow) == set(fast) and 0 < float(slow["map"]) < 1
    for key in slow:
        torch.testing.assert_close(fast[key], slow[key], rtol=0, atol=0, msg=key)
