"""Downstream task metrics against hand-made predictions."""

from __future__ import annotations

import pytest
import torch

from vlpbench.tasks.retrieval import recall_at_k


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
