"""SynthCXR: determinism, and consistency of images, labels, masks, boxes and reports."""

from __future__ import annotations

import numpy as np
import pytest

from vlpbench.data.synthcxr import (BILATERAL, FINDINGS, LEFT, LOCAL_FINDINGS, NORMAL_REPORTS, RIGHT,
                                    SynthCXRConfig, checksum, generate, pair_duplicate_rate)
from vlpbench.core.errors import DataError


@pytest.fixture(scope="module")
def split():
    return generate("train", 600, SynthCXRConfig(seed=3, image_size=48))


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    config = SynthCXRConfig(seed=7, image_size=32)
    assert checksum(generate("pretrain", 150, config)) == checksum(generate("pretrain", 150, config))
    assert checksum(generate("pretrain", 150, config)) != checksum(generate("pretrain", 150, SynthCXRConfig(seed=8, image_size=32)))


def test_a_smaller_split_is_a_prefix_of_a_larger_one() -> None:
    config = SynthCXRConfig(image_size=32)
    small, large = generate("val", 130, config), generate("val", 300, config)
    assert np.array_equal(small.images, large.images[:130])
    assert small.sentences == large.sentences[:130]
    assert np.array_equal(small.boxes, large.boxes[large.boxes[:, 0] < 130])


def test_patients_are_disjoint_between_splits() -> None:
    ids = [set(generate(name, 64, SynthCXRConfig(image_size=32)).patient_ids) for name in ("pretrain", "train", "val", "test")]
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            assert not ids[i] & ids[j]


def test_images_are_grayscale_in_unit_range(split) -> None:
    assert split.images.shape == (600, 48, 48) and split.images.dtype == np.float32
    assert split.images.min() >= 0.0 and split.images.max() <= 1.0
    assert split.labels.shape == (600, len(FINDINGS)) and len(FINDINGS) >= 8


def test_a_local_mask_exists_exactly_when_its_finding_is_labelled(split) -> None:
    for finding in LOCAL_FINDINGS:
        has_mask = split.masks(finding).any((1, 2))
        labelled = split.labels[:, FINDINGS.index(finding)] == 1
        assert labelled.sum() > 5, finding
        assert np.array_equal(has_mask, labelled), finding


def test_masks_lie_on_the_reported_side(split) -> None:
    """Patient's right is the image's left (PA convention)."""
    centre = split.images.shape[-1] / 2
    columns = np.arange(split.images.shape[-1])
    for finding in LOCAL_FINDINGS:
        k = FINDINGS.index(finding)
        mask = split.masks(finding)
        area = mask.sum((1, 2))
        mean_x = (mask * columns).sum((1, 2)) / np.maximum(area, 1)
        assert (mean_x[split.sides[:, k] == RIGHT] < centre).all(), finding
        assert (mean_x[split.sides[:, k] == LEFT] > centre).all(), finding


def test_boxes_are_the_bounding_boxes_of_the_masks(split) -> None:
    expected_rows = sum(int(split.labels[:, FINDINGS.index(f)].sum()) for f in LOCAL_FINDINGS)
    assert len(split.boxes) == expected_rows
    for sample, finding_index, x0, y0, x1, y1 in split.boxes[:80]:
        mask = split.masks(FINDINGS[int(finding_index)])[int(sample)]
        ys, xs = np.nonzero(mask)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_reports_say_what_the_image_shows(split) -> None:
    for i in range(len(split)):
        sentences, present = split.sentences[i], [FINDINGS[k] for k in np.flatnonzero(split.labels[i])]
        report = " ".join(sentences).lower()
        assert len(sentences) >= 4 and 0 < split.impression_start[i] < len(sentences)
        if not present:
            assert any(tuple(sentences[: len(f)]) == f and tuple(sentences[-len(i):]) == i for f, i in NORMAL_REPORTS)
            continue
        for finding in present:
            k = FINDINGS.index(finding)
            side = int(split.sides[i, k])
            if side in (RIGHT, LEFT):
                word = "right" if side == RIGHT else "left"
                assert word in split.locations[i][finding] and word in report, (finding, report)
            if side == BILATERAL and finding == "pleural_effusion":
                assert "bilateral" in report
        if "cardiomegaly" not in present and "heart size is normal" in report:
            assert "enlarged" not in report


def test_normal_studies_repeat_few_phrasings(split) -> None:
    normal = split.labels.sum(1) == 0
    texts = {" ".join(s) for s, n in zip(split.sentences, normal) if n}
    # three templates, each with or without one of two pertinent negatives
    assert normal.mean() > 0.25 and len(texts) <= 3 * len(NORMAL_REPORTS)


def test_pair_duplicate_rate_by_hand() -> None:
    rows = np.array([[1, 0], [1, 0], [0, 1], [1, 0]])
    # one group of 3 identical rows: 3·2 ordered pairs out of 4·3
    assert pair_duplicate_rate(rows) == pytest.approx(0.5)
    assert pair_duplicate_rate(np.eye(3)) == 0.0


def test_false_negative_rate_counts_laterality(split) -> None:
    plain, lateral = split.false_negative_rate(), split.false_negative_rate(with_laterality=True)
    assert 0.05 < lateral <= plain < 0.6


def test_difficulty_lowers_finding_contrast() -> None:
    def contrast(difficulty: float) -> float:
        s = generate("train", 400, SynthCXRConfig(difficulty=difficulty, image_size=48))
        nodule = s.masks("nodule")
        return float(s.images[nodule].mean())

    assert contrast(0.0) > contrast(1.0) + 0.05


def test_bad_requests_are_clear_errors() -> None:
    with pytest.raises(DataError, match="splits"):
        generate("holdout", 10)
    with pytest.raises(DataError, match="image_size"):
        SynthCXRConfig(image_size=8)
