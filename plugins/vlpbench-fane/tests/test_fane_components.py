"""FaNe's components against hand-worked values, reductions, permutation and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from vlpbench.plugin_api import BuildContext, DirectionAdjustment, Positives, within_report_infonce
from vlpbench.devkit.testing import feature_inputs, permute_inputs
from vlpbench_fane.losses import HardNegativeIntraModal, SigmoidMultiPositiveLoss
from vlpbench_fane.loop_reference import tcsap_loop
from vlpbench_fane.miner import AdaptiveSemanticMiner, adaptive_normalise, batch_baseline
from vlpbench_fane.tcsap import TCSAP

NONE = DirectionAdjustment()
CORPUS = ["No acute cardiopulmonary process.", "No acute cardiopulmonary process.",
          "Small right pleural effusion.", "Left apical pneumothorax."]


def miner(**params) -> AdaptiveSemanticMiner:
    return AdaptiveSemanticMiner(AdaptiveSemanticMiner.Params(**params), BuildContext(corpus=CORPUS))


def test_batch_baseline_and_normalisation_by_hand() -> None:
    r = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert batch_baseline(r).item() == pytest.approx(0.7453560, abs=1e-6)  # √5/3
    s = adaptive_normalise(r @ r.t(), torch.tensor(0.7453560), kappa=0.95)
    assert s[0, 1].item() == pytest.approx(0.9999961, abs=1e-6)
    assert s[0, 2].item() == pytest.approx(-2.9270395, abs=1e-5)
    assert s.diagonal().tolist() == pytest.approx([1.95] * 3)


def test_ema_starts_at_the_first_batch_then_moves_by_five_percent() -> None:
    m = miner()
    first = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    m.normalised_similarity(first)
    assert m.baseline.item() == pytest.approx(0.7453560, abs=1e-6)
    m.normalised_similarity(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # o_b = 0.7071068
    assert m.baseline.item() == pytest.approx(0.7434435, abs=1e-6)
    m.eval()
    m.normalised_similarity(first)
    assert m.baseline.item() == pytest.approx(0.7434435, abs=1e-6)  # frozen outside training


def test_identical_reports_are_mined_as_positives_with_tfidf() -> None:
    inputs = feature_inputs(batch_size=4, index=torch.arange(4))
    positives = miner()(inputs)
    assert positives.affinity.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def test_kappa_above_every_similarity_gives_identity_targets() -> None:
    positives = miner(kappa=2.0)(feature_inputs(batch_size=4, index=torch.arange(4)))
    assert torch.equal(positives.affinity, torch.eye(4))


def test_sigmoid_multi_positive_loss_by_hand() -> None:
    loss = SigmoidMultiPositiveLoss(SigmoidMultiPositiveLoss.Params(temperature=1.0, scale_init=1.0, bias_init=1.0))
    v = t = torch.eye(2)
    # z = a·s − b: diagonal 0, off-diagonal −1
    identity = loss(v, t, Positives(torch.eye(2)), NONE, NONE)
    assert identity.item() == pytest.approx(math.log(2) + 0.3132617, abs=1e-6)
    everything = loss(v, t, Positives(torch.ones(2, 2)), NONE, NONE)
    assert everything.item() == pytest.approx(math.log(2) + 1.3132617, abs=1e-6)


def test_sigmoid_scale_is_used_as_is_and_learns() -> None:
    """∂L/∂a and ∂L/∂b equal the closed form of L = (1/B) Σ_ij softplus(u_ij), u = H(−a·s + b):
    ∂L/∂a = (1/B) Σ σ(u)·(−H s), ∂L/∂b = (1/B) Σ σ(u)·H (a used as is, b with a plus sign)."""
    loss = SigmoidMultiPositiveLoss(SigmoidMultiPositiveLoss.Params()).double()
    assert loss.scale.item() == pytest.approx(2.6592600, abs=1e-6) and loss.bias.item() == -10.0
    generator = torch.Generator().manual_seed(0)
    v, t = (torch.randn(4, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    positives = torch.eye(4, dtype=torch.float64)
    positives[0, 1] = positives[1, 0] = 1.0  # a mined positive off the diagonal: H = +1 there too
    loss(v, t, Positives(positives), NONE, NONE).backward()
    a, b = loss.scale.item(), loss.bias.item()
    s = torch.nn.functional.normalize(v, dim=1) @ torch.nn.functional.normalize(t, dim=1).t() / 0.1
    h = 2 * positives - 1
    sigma = torch.sigmoid(h * (-a * s + b))
    assert loss.scale.grad.item() == pytest.approx((sigma * -h * s).sum().item() / 4, abs=1e-10)
    assert loss.bias.grad.item() == pytest.approx((sigma * h).sum().item() / 4, abs=1e-10)
    assert abs(loss.scale.grad.item()) > 1e-3 and abs(loss.bias.grad.item()) > 1e-3


def hard_negative(**params) -> HardNegativeIntraModal:
    return HardNegativeIntraModal(HardNegativeIntraModal.Params(temperature=1.0, weight_temperature=1.0, **params))


def test_hard_negative_term_by_hand() -> None:
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    inputs = feature_inputs(image_global=e, text_global=e)
    # rows 0 and 1: softmax([1, 0]) weights → e/(e+1) = 0.7310586; row 2: all similarities 0
    value = hard_negative()(inputs, Positives(torch.eye(3))).losses["hn"]
    assert value.item() == pytest.approx(0.4873724, abs=1e-6)
    linear = hard_negative(normalisation="linear")(inputs, Positives(torch.eye(3))).losses["hn"]
    assert linear.item() == pytest.approx(2 / 3, abs=1e-6)


def test_hard_negatives_exclude_mined_positives_and_ignored_pairs() -> None:
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    inputs = feature_inputs(image_global=e, text_global=e)
    mined = torch.tensor([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert hard_negative()(inputs, Positives(mined)).losses["hn"].item() == pytest.approx(0.0, abs=1e-7)
    ignored = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    assert hard_negative()(inputs, Positives(torch.eye(3), ignored)).losses["hn"].item() == pytest.approx(0.0, abs=1e-7)


def test_within_report_infonce_by_hand_with_padding() -> None:
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    losses = within_report_infonce(q, q, mask, temperature=1.0)
    assert losses.tolist() == pytest.approx([0.3132617, 0.0], abs=1e-6)  # log(e+1) − 1; one sentence: 0


def tcsap(dim: int = 8) -> TCSAP:
    torch.manual_seed(0)
    return TCSAP(TCSAP.Params(dim=dim), BuildContext(embed_dim=8))


def test_constant_mask_gives_its_value_as_sparsity() -> None:
    head = tcsap()
    with torch.no_grad():
        head.attention.mask_out.weight.zero_()
        head.attention.mask_out.bias.fill_(0.0)
    out = head(feature_inputs(batch_size=3, dim=8, sentence_counts=[3, 1, 2]))
    assert out["spa"].item() == pytest.approx(0.5, abs=1e-7)


def test_tcsap_vectorised_equals_the_per_report_loop() -> None:
    head = tcsap()
    inputs = feature_inputs(batch_size=5, dim=8, grid=(3, 3), sentence_counts=[3, 1, 2, 3, 0], seed=2)
    fast, slow = head(inputs), tcsap_loop(head, inputs)
    for key in ("tc", "spa"):
        assert fast[key].item() == pytest.approx(slow[key].item(), abs=1e-5), key


def test_tcsap_is_invariant_to_batch_order_and_sends_finite_gradients() -> None:
    head = tcsap()
    inputs = feature_inputs(batch_size=4, dim=8, sentence_counts=[3, 1, 2, 3], seed=3)
    inputs.text.sentence_emb.requires_grad_(True)
    inputs.image.patch_emb.requires_grad_(True)
    out = head(inputs)
    permuted = head(permute_inputs(inputs, torch.tensor([2, 0, 3, 1])))
    for key in out:
        assert out[key].item() == pytest.approx(permuted[key].item(), abs=1e-6)
    (out["tc"] + out["spa"]).backward()
    assert torch.isfinite(inputs.text.sentence_emb.grad).all() and inputs.image.patch_emb.grad.abs().sum() > 0
    assert head.attention.mask_hidden.weight.grad.abs().sum() > 0


def test_miner_never_sends_gradients_and_has_no_parameters() -> None:
    m = miner()
    assert not list(m.parameters())
    positives = m(feature_inputs(batch_size=4, index=torch.arange(4)))
    assert not positives.affinity.requires_grad


def test_global_and_intra_modal_losses_are_invariant_to_batch_order() -> None:
    torch.manual_seed(1)
    v, t = torch.randn(5, 8), torch.randn(5, 8)
    mined = torch.eye(5)
    mined[0, 3] = mined[3, 0] = 1.0
    order = torch.tensor([4, 2, 0, 1, 3])
    loss = SigmoidMultiPositiveLoss(SigmoidMultiPositiveLoss.Params())
    a = loss(v, t, Positives(mined), NONE, NONE)
    b = loss(v[order], t[order], Positives(mined[order][:, order]), NONE, NONE)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    term = HardNegativeIntraModal(HardNegativeIntraModal.Params())
    inputs = feature_inputs(image_global=v, text_global=t)
    a = term(inputs, Positives(mined)).losses["hn"]
    b = term(permute_inputs(inputs, order), Positives(mined[order][:, order])).losses["hn"]
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_mined_targets_follow_a_permuted_batch() -> None:
    m = miner()
    index = torch.tensor([3, 0, 2, 1])
    a = m(feature_inputs(batch_size=4, index=torch.arange(4))).affinity
    b = m(feature_inputs(batch_size=4, index=index)).affinity
    assert torch.equal(b, a[index][:, index])
