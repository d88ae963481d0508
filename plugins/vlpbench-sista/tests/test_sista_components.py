"""SISTA's components against hand-worked values, reductions, permutation and gradients."""

from __future__ import annotations

import pytest
import torch

from vlpbench.plugin_api import BuildContext, DirectionAdjustment, InfoNCELoss, within_report_infonce
from vlpbench.devkit.testing import feature_inputs, permute_inputs
from vlpbench_sista.loop_reference import sta_loop
from vlpbench_sista.miner import FalseNegativeElimination, eliminate_false_negatives
from vlpbench_sista.sta import SparseTokenAlignment, sparse_alignment_weights

NONE = DirectionAdjustment()
SIMILARITY = torch.tensor([[1.0, 0.95, 0.2], [0.95, 1.0, 0.5], [0.2, 0.5, 1.0]])
CORPUS = ["No acute cardiopulmonary process.", "No acute cardiopulmonary process.", "Small right effusion."]


def test_mask_mode_ignores_matched_pairs() -> None:
    positives = eliminate_false_negatives(SIMILARITY, 0.9, "mask")
    assert torch.equal(positives.affinity, torch.eye(3))
    assert positives.ignore.tolist() == [[False, True, False], [True, False, False], [False, False, False]]


def test_multi_positive_and_soft_modes_by_hand() -> None:
    multi = eliminate_false_negatives(SIMILARITY, 0.9, "multi-positive")
    assert multi.affinity.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    soft = eliminate_false_negatives(SIMILARITY, 0.9, "soft")
    assert soft.affinity[0, 1].item() == pytest.approx(0.5, abs=1e-6)  # (0.95 − 0.9) / (1 − 0.9)
    assert soft.affinity[0, 2].item() == 0.0 and soft.affinity[2, 2].item() == 1.0


def test_mask_mode_above_one_equals_plain_infonce() -> None:
    miner = FalseNegativeElimination(FalseNegativeElimination.Params(threshold=1.01), BuildContext(corpus=CORPUS))
    inputs = feature_inputs(batch_size=3, index=torch.arange(3))
    loss = InfoNCELoss(InfoNCELoss.Params(learnable=False))
    eliminated = loss(inputs.image.global_emb, inputs.text.global_emb, miner(inputs), NONE, NONE)
    plain_positives = eliminate_false_negatives(torch.zeros(3, 3), 0.5, "mask")
    plain = loss(inputs.image.global_emb, inputs.text.global_emb, plain_positives, NONE, NONE)
    assert eliminated.item() == pytest.approx(plain.item(), abs=1e-7)


def test_frozen_tfidf_source_matches_identical_reports() -> None:
    miner = FalseNegativeElimination(FalseNegativeElimination.Params(), BuildContext(corpus=CORPUS))
    positives = miner(feature_inputs(batch_size=3, index=torch.arange(3)))
    assert positives.ignore.tolist() == [[False, True, False], [True, False, False], [False, False, False]]


def test_learned_source_uses_detached_text_embeddings() -> None:
    miner = FalseNegativeElimination(FalseNegativeElimination.Params(source="learned", mode="multi-positive"), BuildContext())
    text = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    positives = miner(feature_inputs(text_global=text, image_global=torch.randn(3, 2)))
    assert positives.affinity.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert not positives.affinity.requires_grad


def test_sparse_weights_by_hand() -> None:
    s = torch.tensor([[[0.1, 0.5, 0.3, 0.9]]])
    # min–max → [0, .5, .25, 1]; threshold 1/N = .25 keeps .25; renormalise by 1.75
    assert sparse_alignment_weights(s, "threshold", 8)[0, 0].tolist() == pytest.approx([0, 0.2857143, 0.1428571, 0.5714286], abs=1e-6)
    assert sparse_alignment_weights(s, "topk", 2)[0, 0].tolist() == pytest.approx([0, 1 / 3, 0, 2 / 3], abs=1e-6)
    s2 = torch.tensor([[[0.1, 0.2, 0.3, 0.9]]])  # min–max → [0, .125, .25, 1]: threshold drops .125
    assert sparse_alignment_weights(s2, "threshold", 8)[0, 0].tolist() == pytest.approx([0, 0, 0.2, 0.8], abs=1e-6)
    assert sparse_alignment_weights(s2, "none", 8)[0, 0].tolist() == pytest.approx([0, 0.125 / 1.375, 0.25 / 1.375, 1 / 1.375], abs=1e-6)


def test_word_infonce_by_hand_with_padding() -> None:
    w = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [3.0, 3.0]]])
    mask = torch.tensor([[True, True, False]])
    assert within_report_infonce(w, w, mask, 1.0).item() == pytest.approx(0.3132617, abs=1e-6)


@pytest.mark.parametrize("sparsify", ["threshold", "topk", "none"])
def test_vectorised_equals_the_per_report_loop(sparsify: str) -> None:
    head = SparseTokenAlignment(SparseTokenAlignment.Params(sparsify=sparsify, top_k=3))
    inputs = feature_inputs(batch_size=5, dim=8, grid=(3, 3), word_counts=[6, 2, 4, 1, 5], seed=4)
    assert head(inputs)["sta"].item() == pytest.approx(sta_loop(head, inputs)["sta"].item(), abs=1e-5)


def test_sta_is_invariant_to_batch_order_and_sends_gradients() -> None:
    head = SparseTokenAlignment(SparseTokenAlignment.Params())
    inputs = feature_inputs(batch_size=4, dim=8, word_counts=[6, 2, 4, 3], seed=5)
    inputs.text.word_emb.requires_grad_(True)
    inputs.image.patch_emb.requires_grad_(True)
    out = head(inputs)["sta"]
    assert out.item() == pytest.approx(head(permute_inputs(inputs, torch.tensor([3, 1, 0, 2])))["sta"].item(), abs=1e-6)
    out.backward()
    assert torch.isfinite(inputs.text.word_emb.grad).all() and inputs.image.patch_emb.grad.abs().sum() > 0
