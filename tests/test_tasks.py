"""Downstream task metrics against hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlpbench.tasks.retrieval import recall_at_k, same_finding_set


def test_recall_perfect_inverted_and_semantic() -> None:
    n = 12
    perfect = torch.eye(n)
    strict = torch.eye(n, dtype=torch.bool)
    assert recall_at_k(perfect, strict, [1, 5, 10]) == {1: 1.0, 5: 1.0, 10: 1.0}
    inverted = -torch.eye(n)  # the paired item ranks last
    assert recall_at_k(inverted, strict, [1, 5, 10]) == {1: 0.0, 5: 0.0, 10: 0.0}
    # items 2k and 2k+1 share a finding set; each query's pair ranks second, its twin first
    twin = torch.arange(n) ^ 1
    similarity = torch.eye(n) * 0.5
    similarity[torch.arange(n), twin] = 1.0
    semantic = strict | (torch.arange(n).unsqueeze(1) // 2 == torch.arange(n).unsqueeze(0) // 2)
    assert recall_at_k(similarity, strict, [1, 5]) == {1: 0.0, 5: 1.0}
    assert recall_at_k(similarity, semantic, [1]) == {1: 1.0}


def test_recall_with_a_random_matrix_is_near_chance() -> None:
    torch.manual_seed(0)
    n = 400
    value = recall_at_k(torch.rand(n, n), torch.eye(n, dtype=torch.bool), [10])[10]
    assert value == pytest.approx(10 / n, abs=0.03)


def test_linear_probe_scores_perfect_inverted_constant_and_skips_labels_without_positives() -> None:
    from vlpbench.tasks.linear_probe import LinearProbe

    target = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    present = target.sum(0) > 0  # the third label has no test positive: left out of the mean
    perfect = target.float() * 10 - 5
    assert LinearProbe._score(perfect, target, present, multiclass=False) == pytest.approx(1.0)
    assert LinearProbe._score(-perfect, target, present, multiclass=False) == pytest.approx(0.0)
    assert LinearProbe._score(torch.zeros(4, 3), target, present, multiclass=False) == pytest.approx(0.5)
    classes = torch.tensor([[1, 0], [0, 1], [0, 1]])
    assert LinearProbe._score(torch.tensor([[2.0, 0], [0, 2], [2, 0]]), classes, classes.sum(0) > 0,
                              multiclass=True) == pytest.approx(2 / 3)


def test_label_fractions_are_deterministic_nested_and_stratified() -> None:
    import numpy as np

    from vlpbench.tasks.base import nested_stratified_fractions

    rng = np.random.default_rng(0)
    labels = (rng.random((500, 4)) < [0.3, 0.1, 0.02, 0.005]).astype(np.uint8)
    labels[rng.integers(500), 3] = 1  # at least one positive of the rarest label
    first = nested_stratified_fractions(labels, [0.01, 0.1, 1.0], seed=42)
    again = nested_stratified_fractions(labels, [0.01, 0.1, 1.0], seed=42)
    other = nested_stratified_fractions(labels, [0.01, 0.1, 1.0], seed=7)
    assert all(np.array_equal(first[f], again[f]) for f in first)
    assert not np.array_equal(first[0.01], other[0.01])
    assert set(first[0.01]) <= set(first[0.1]) <= set(first[1.0]) and len(first[1.0]) == 500
    assert (labels[first[0.01]].sum(0) > 0).all()  # every label keeps a positive, even at 1 %
    assert len(first[0.01]) <= 5 + labels.shape[1]


def test_same_finding_set_equals_the_pairwise_comparison_of_label_rows() -> None:
    """The integer-id construction gives exactly the [n, n] matrix of equal label rows."""
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 8)) < 0.15).astype(np.uint8)  # many repeated rows, 'no finding' the commonest
    expected = (torch.from_numpy(labels).unsqueeze(1) == torch.from_numpy(labels).unsqueeze(0)).all(-1)
    got = same_finding_set(labels)
    assert got.dtype == torch.bool and torch.equal(got, expected)
    assert bool(got.diagonal().all()) and int(got.sum()) > 200  # duplicates exist
    assert same_finding_set(np.zeros((0, 8), np.uint8)).shape == (0, 0)
    unknown = np.array([[1.0, np.nan], [1.0, np.nan], [0.0, 1.0]])  # a missing label equals nothing
    assert same_finding_set(unknown).tolist() == [[False, False, False], [False, False, False], [False, False, True]]
