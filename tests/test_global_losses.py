"""Global losses against values worked out by hand on 2×2 and 3×3 cases.

With one-hot unit vectors and temperature 1 the logits are the identity matrix, so every
expected value below is a short expression in e: e.g. log(e + 1) − 1 = 0.3132617.
"""

from __future__ import annotations

import pytest
import torch

from vlpbench.objective.contracts import DirectionAdjustment, NegativeAdjustment, Positives, combine_directions
from vlpbench.objective.global_losses import InfoNCELoss, SigmoidLoss

NONE = DirectionAdjustment()


def infonce(temperature: float = 1.0) -> InfoNCELoss:
    return InfoNCELoss(InfoNCELoss.Params(temperature=temperature, learnable=False))


def eye(n: int) -> torch.Tensor:
    return torch.eye(n, dtype=torch.float64)


def test_infonce_identity_targets_2x2() -> None:
    loss = infonce()(eye(2), eye(2), Positives(eye(2)), NONE, NONE)
    assert loss.item() == pytest.approx(0.3132617, abs=1e-6)  # log(e + 1) − 1


def test_infonce_multi_positive_targets_2x2() -> None:
    loss = infonce()(eye(2), eye(2), Positives(torch.ones(2, 2, dtype=torch.float64)), NONE, NONE)
    assert loss.item() == pytest.approx(0.8132617, abs=1e-6)  # log(e + 1) − ½(1 + 0)


def test_infonce_ignored_pairs_leave_the_denominator_3x3() -> None:
    ignore = torch.zeros(3, 3, dtype=torch.bool)
    ignore[0, 1] = ignore[1, 0] = True
    loss = infonce()(eye(3), eye(3), Positives(eye(3), ignore), NONE, NONE)
    # rows 0, 1: log(e + 1) − 1; row 2: log(e + 2) − 1; same in both directions
    assert loss.item() == pytest.approx(0.3926560, abs=1e-6)


def test_infonce_negative_weights_multiply_exp_2x2() -> None:
    weight = torch.tensor([[1.0, 2.0], [0.5, 1.0]], dtype=torch.float64)
    loss = infonce()(eye(2), eye(2), Positives(eye(2)), DirectionAdjustment(weight=weight), NONE)
    # i2t rows: log(e + 2) − 1 and log(e + 0.5) − 1; t2i unweighted: log(e + 1) − 1
    assert loss.item() == pytest.approx(0.3367039, abs=1e-6)


def test_infonce_extra_columns_join_the_denominator() -> None:
    extra = torch.tensor([[3.0], [0.0]], dtype=torch.float64)
    loss = infonce()(eye(2), eye(2), Positives(eye(2)), DirectionAdjustment(extra_logits=extra), NONE)
    # i2t rows: log(e + 1 + e³) − 1 and log(e + 2) − 1
    assert loss.item() == pytest.approx(0.8369535, abs=1e-6)


def test_infonce_weight_never_touches_positives() -> None:
    weight = torch.full((2, 2), 7.0, dtype=torch.float64)
    weight[0, 1] = 1.0  # a mined positive keeps weight 1 whatever the weighting says
    both = Positives(torch.ones(2, 2, dtype=torch.float64))
    plain = infonce()(eye(2), eye(2), both, NONE, NONE)
    weighted = infonce()(eye(2), eye(2), both, DirectionAdjustment(weight=weight), NONE)
    assert weighted.item() == pytest.approx(plain.item(), abs=1e-9)


def test_infonce_temperature_scales_logits() -> None:
    loss = infonce(temperature=0.5)(eye(2), eye(2), Positives(eye(2)), NONE, NONE)
    assert loss.item() == pytest.approx(0.1269280, abs=1e-6)  # log(e² + 1) − 2


def test_infonce_is_invariant_to_batch_permutation() -> None:
    torch.manual_seed(0)
    v, t = torch.randn(6, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64)
    affinity = eye(6)
    affinity[0, 3] = affinity[3, 0] = 1.0
    perm = torch.tensor([5, 2, 0, 1, 4, 3])
    loss = infonce(0.1)(v, t, Positives(affinity), NONE, NONE)
    permuted = infonce(0.1)(v[perm], t[perm], Positives(affinity[perm][:, perm]), NONE, NONE)
    assert permuted.item() == pytest.approx(loss.item(), abs=1e-10)


def test_sigmoid_identity_2x2() -> None:
    loss = SigmoidLoss(SigmoidLoss.Params(scale=1.0, bias=0.0, learnable=False))(eye(2), eye(2), Positives(eye(2)), NONE, NONE)
    assert loss.item() == pytest.approx(1.0064089, abs=1e-6)  # softplus(−1) + softplus(0)


def test_sigmoid_weights_average_the_two_directions() -> None:
    weight = torch.tensor([[1.0, 3.0], [0.0, 1.0]], dtype=torch.float64)
    sig = SigmoidLoss(SigmoidLoss.Params(scale=1.0, bias=0.0, learnable=False))
    # only i2t weighted: pair (0,1) counts 3×, pair (1,0) 0×: softplus(−1) + 1.5·softplus(0)
    assert sig(eye(2), eye(2), Positives(eye(2)), DirectionAdjustment(weight=weight), NONE).item() == pytest.approx(1.3529825, abs=1e-6)


def test_sigmoid_skips_ignored_pairs() -> None:
    ignore = torch.tensor([[False, True], [True, False]])
    sig = SigmoidLoss(SigmoidLoss.Params(scale=1.0, bias=0.0, learnable=False))
    # only the two positives remain: (2·softplus(−1)) / 2
    assert sig(eye(2), eye(2), Positives(eye(2), ignore), NONE, NONE).item() == pytest.approx(0.3132617, abs=1e-6)


def test_combined_weightings_multiply_and_concatenate() -> None:
    a = DirectionAdjustment(weight=torch.full((2, 2), 2.0), extra_logits=torch.zeros(2, 1))
    b = DirectionAdjustment(weight=torch.full((2, 2), 3.0), extra_logits=torch.ones(2, 2))
    merged = combine_directions([a, b, NegativeAdjustment().image_to_text])
    assert torch.equal(merged.weight, torch.full((2, 2), 6.0))
    assert merged.extra_logits.shape == (2, 3)


def test_learnable_temperature_receives_the_clip_gradient() -> None:
    """The gradients equal those of CLIP's loss written out by hand (two cross-entropies).

    For ``log_scale`` also against the closed form: with cosines ``c``, scale ``s`` and
    ``p = softmax(s·c)`` per row, ``∂L/∂log s = s · ½ Σ_dir (1/B) Σ_i (Σ_j p_ij c_ij − c_ii)``.
    """
    generator = torch.Generator().manual_seed(0)
    loss_fn = InfoNCELoss(InfoNCELoss.Params(temperature=0.07)).double()
    assert loss_fn.log_scale.item() == pytest.approx(2.6592600, abs=1e-6)  # log(1/0.07)
    v = torch.randn(4, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    loss_fn(v, t, Positives(eye(4)), NONE, NONE).backward()

    log_scale = loss_fn.log_scale.detach().clone().requires_grad_()  # log(1/0.07) as stored (float32 → 64)
    v_ref, t_ref = v.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
    cosines = torch.nn.functional.normalize(v_ref, dim=1) @ torch.nn.functional.normalize(t_ref, dim=1).t()
    logits, labels = log_scale.exp() * cosines, torch.arange(4)
    reference = 0.5 * (torch.nn.functional.cross_entropy(logits, labels)
                       + torch.nn.functional.cross_entropy(logits.t(), labels))
    reference.backward()
    assert torch.allclose(v.grad, v_ref.grad, atol=1e-10) and torch.allclose(t.grad, t_ref.grad, atol=1e-10)
    assert loss_fn.log_scale.grad.item() == pytest.approx(log_scale.grad.item(), abs=1e-10)

    c, scale = cosines.detach(), log_scale.detach().exp()
    by_direction = [((torch.softmax(scale * m, 1) * m).sum(1) - m.diagonal()).mean() for m in (c, c.t())]
    closed_form = scale * 0.5 * sum(by_direction)
    assert loss_fn.log_scale.grad.item() == pytest.approx(closed_form.item(), abs=1e-8)
    assert abs(closed_form.item()) > 1e-3  # a gradient that could tell a wrong one apart


def test_a_fixed_temperature_gets_no_gradient() -> None:
    loss_fn = InfoNCELoss(InfoNCELoss.Params(temperature=0.07, learnable=False))
    v = torch.randn(4, 8, requires_grad=True)
    loss_fn(v, torch.randn(4, 8), Positives(torch.eye(4)), NONE, NONE).backward()
    assert not loss_fn.log_scale.requires_grad and loss_fn.log_scale.grad is None
    assert v.grad.abs().sum() > 0
