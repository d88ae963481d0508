"""The board's statistics against scipy and hand-computed values, on fixed predictions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from vlpbench.board import resample
from vlpbench.board.multiple import adjust


def test_holm_and_benjamini_hochberg_against_hand_values() -> None:
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4; the NaN is no comparison)
    # Holm: 4·0.005 = 0.02, 3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 1·0.04) = 0.06
    assert adjust(p, "holm")[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: 4·0.005/1 = 0.02, 4·0.01/2 = 0.02, 4·0.03/3 = 0.04, 4·0.04/4 = 0.04 (then running minimum from the top)
    assert adjust(p, "bh")[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert np.isnan(adjust(p, "holm")[4]) and adjust([0.6, 0.7], "holm") == pytest.approx([1.0, 1.0])


def test_scores_from_samples_match_the_tasks_metrics() -> None:
    from torchmetrics.functional.classification import multilabel_auroc
    import torch

    rng = np.random.default_rng(0)
    labels = (rng.random((80, 3)) < 0.3).astype(np.uint8)
    scores = (labels + rng.normal(0, 0.8, labels.shape)).astype(np.float32)
    expected = float(multilabel_auroc(torch.from_numpy(scores), torch.from_numpy(labels).long(), num_labels=3, average="macro"))
    assert resample.score("auroc", {"scores": scores, "labels": labels})[0] == pytest.approx(expected, abs=1e-6)
    assert resample.score("ratio", {"numerator": np.array([2, 0]), "denominator": np.array([4, 4])})[0] == 0.25


def test_bootstrap_interval_over_test_cases_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    values = rng.random(300)
    low, high = resample.bootstrap_ci("mean", [{"values": values}], resamples=4000)
    reference = stats.bootstrap((values,), np.mean, method="percentile", n_resamples=4000, random_state=0).confidence_interval
    assert low == pytest.approx(reference.low, abs=0.006) and high == pytest.approx(reference.high, abs=0.006)


def test_bootstrap_interval_of_an_auroc_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    labels = (rng.random(200) < 0.4).astype(np.uint8)
    scores = labels + rng.normal(0, 1.0, 200)

    def auroc(s: np.ndarray, y: np.ndarray) -> float:
        return float(resample.score("auroc", {"scores": s[:, None], "labels": y[:, None]})[0])

    low, high = resample.bootstrap_ci("auroc", [{"scores": scores[:, None], "labels": labels[:, None]}], resamples=2000)
    reference = stats.bootstrap((scores, labels), auroc, paired=True, vectorized=False, method="percentile",
                                n_resamples=2000, random_state=0).confidence_interval
    assert low == pytest.approx(reference.low, abs=0.015) and high == pytest.approx(reference.high, abs=0.015)


def test_bootstrap_over_seeds_widens_the_interval() -> None:
    rng = np.random.default_rng(3)
    base = rng.random(200)
    seeds = [{"values": base + shift} for shift in (-0.1, 0.0, 0.1)]  # seeds that disagree by ±0.1
    one = resample.bootstrap_ci("mean", [seeds[1]])
    three = resample.bootstrap_ci("mean", seeds)
    assert three[1] - three[0] > 2 * (one[1] - one[0])


def test_paired_permutation_test_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    a = rng.random(40) + 0.08
    b = rng.random(40)
    test = resample.paired_test("mean", [{"values": a}], [{"values": b}], permutations=20000)
    reference = stats.permutation_test((a, b), lambda x, y: np.mean(x) - np.mean(y), permutation_type="samples",
                                       n_resamples=20000, random_state=0)
    assert test["difference"] == pytest.approx(np.mean(a - b))
    assert test["p"] == pytest.approx(reference.pvalue, abs=0.01)
    assert test["diff_ci95_low"] < test["difference"] < test["diff_ci95_high"]


def test_permutation_test_of_an_auroc_difference() -> None:
    rng = np.random.default_rng(5)
    labels = (rng.random(400) < 0.5).astype(np.uint8)[:, None]
    strong = {"scores": labels + rng.normal(0, 0.7, labels.shape), "labels": labels}
    weak = {"scores": 100 * (labels + rng.normal(0, 2.0, labels.shape)), "labels": labels}  # another scale
    same = {"scores": strong["scores"] * 10 + 3, "labels": labels}  # a monotone transform: the same AUROC
    assert resample.paired_test("auroc", [strong], [weak], permutations=500)["p"] < 0.01
    tie = resample.paired_test("auroc", [strong], [same], permutations=500)
    assert tie["difference"] == pytest.approx(0.0) and tie["p"] == pytest.approx(1.0)


def test_map_from_matches_equals_torchmetrics() -> None:
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    from vlpbench.tasks.detection import IOU_THRESHOLDS, coco_matches

    rng = np.random.default_rng(6)
    predictions, truth = [], []
    for _ in range(25):
        gt = int(rng.integers(0, 3))
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in rng.uniform([0, 0, 5, 5], [40, 40, 20, 20], (gt, 4))],
                             dtype=torch.float32).reshape(-1, 4)
        truth.append({"boxes": boxes, "labels": torch.zeros(gt, dtype=torch.long)})
        jitter = boxes + torch.from_numpy(rng.normal(0, 3, boxes.shape)).float()
        noise = torch.from_numpy(rng.uniform(0, 50, (2, 2))).float()
        noise = torch.cat([noise, noise + 10], 1)
        found = torch.cat([jitter, noise])
        predictions.append({"boxes": found, "scores": torch.from_numpy(rng.random(len(found))).float(),
                            "labels": torch.zeros(len(found), dtype=torch.long)})
    metric = MeanAveragePrecision(box_format="xyxy", iou_thresholds=IOU_THRESHOLDS)
    metric.update(predictions, truth)
    expected = float(metric.compute()["map"])
    assert resample.score("map", coco_matches(predictions, truth, 1))[0] == pytest.approx(expected, abs=1e-4)


def test_permutation_p_is_resolved_in_the_far_tail() -> None:
    rng = np.random.default_rng(7)
    null = rng.normal(0, 1, 1000)
    assert resample.permutation_p(null, 0.0) == pytest.approx(1.0, abs=0.01)
    assert resample.permutation_p(null, 1.96) == pytest.approx(0.05, abs=0.012)  # Monte Carlo, resolved
    far = resample.permutation_p(null, 5.0)  # no permutation as extreme: the normal tail, not 1/1001
    assert 1e-8 < far < 1e-5  # ≈ 2·Φ(−5/σ̂) = 5.7e-7 for σ̂ = 1
