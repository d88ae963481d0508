"""ConVIRT's loss against per-sample float64 ports of the official code: ViLMedic/BenchX's
``ConVIRTLoss`` (``vilmedic/blocks/losses/selfsup/ConVIRTLoss.py:12-31``, λ 0.75, τ 0.1) and MGCA's
ConVIRT baseline (``mgca/models/convirt/convirt_module.py:55-77``), loss and gradients within 1e-6;
``preset: convirt`` end to end on ragged reports (the text vector from the encoder's hidden states)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from vlpbench.plugin_api import BuildContext, DirectionAdjustment, Positives
from vlpbench.devkit.testing_official import (CORPUS, assert_close_gradients, build_preset, gradients, plugin_step,
                                       preset_config, ragged_step)
from vlpbench_convirt.loss import ConVIRTLoss

NONE = DirectionAdjustment()


def official_vilmedic(zi: Tensor, zt: Tensor, tau: float = 0.1, lam: float = 0.75) -> Tensor:
    """ConVIRTLoss.forward per sample: exp / sum / log as the official code (not log-sum-exp).

    u = reports, v = images; c_ik = cos(u_i, v_k) with x / max(‖x‖, 1e-8)."""
    batch = zi.shape[0]
    unit = lambda x: x / torch.clamp(x.norm(), min=1e-8)  # noqa: E731
    u = [unit(zt[i]) for i in range(batch)]
    v = [unit(zi[i]) for i in range(batch)]
    total = zi.new_zeros(())
    for i in range(batch):
        num = torch.exp(torch.dot(u[i], v[i]) / tau)
        den_u2v = sum(torch.exp(torch.dot(u[i], v[k]) / tau) for k in range(batch))  # report i over images
        den_v2u = sum(torch.exp(torch.dot(u[k], v[i]) / tau) for k in range(batch))  # image i over reports
        loss_v2u = -torch.log(num / den_v2u)
        loss_u2v = -torch.log(num / den_u2v)
        total = total + lam * loss_v2u + (1 - lam) * loss_u2v
    return total / batch


def official_mgca_convirt(img: Tensor, txt: Tensor, tau: float = 0.07) -> Tensor:
    """ConVIRT.forward's loss in MGCA (convirt_module.py:55-77): CE over both directions, summed."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    labels = torch.arange(img.shape[0])
    scores = img @ txt.t() / tau
    return F.cross_entropy(scores, labels) + F.cross_entropy(scores.t(), labels)


def leaves(generator: torch.Generator, batch: int, dim: int) -> tuple[Tensor, Tensor]:
    rand = lambda: torch.randn(batch, dim, generator=generator, dtype=torch.float64).requires_grad_()  # noqa: E731
    return rand(), rand()


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_vilmedic_style_equals_the_official_loss_and_gradients(batch: int) -> None:
    generator = torch.Generator().manual_seed(batch)
    image, text = leaves(generator, batch, 16)
    ours = ConVIRTLoss(ConVIRTLoss.Params())(image, text, Positives.identity(batch), NONE, NONE)
    official = official_vilmedic(image, text)
    assert ours.item() == pytest.approx(official.item(), abs=1e-9)
    g_ours = torch.autograd.grad(ours, [image, text])
    g_official = torch.autograd.grad(official, [image, text])
    for a, b in zip(g_ours, g_official):
        assert (a - b).abs().max().item() <= 1e-6


def test_lambda_is_on_the_image_to_text_term() -> None:
    """Swapping the roles of images and reports moves λ to the other direction."""
    generator = torch.Generator().manual_seed(0)
    image, text = leaves(generator, 5, 8)
    loss = ConVIRTLoss(ConVIRTLoss.Params())
    forward = loss(image, text, Positives.identity(5), NONE, NONE).item()
    assert forward == pytest.approx(official_vilmedic(image, text).item(), abs=1e-9)
    swapped = loss(text, image, Positives.identity(5), NONE, NONE).item()
    assert swapped == pytest.approx(official_vilmedic(image, text, lam=0.25).item(), abs=1e-9)
    assert abs(forward - swapped) > 1e-3


def test_mgca_style_equals_mgcas_convirt_baseline() -> None:
    generator = torch.Generator().manual_seed(1)
    image, text = leaves(generator, 6, 16)
    ours = ConVIRTLoss(ConVIRTLoss.Params(style="mgca"))(image, text, Positives.identity(6), NONE, NONE)
    official = official_mgca_convirt(image, text)
    assert ours.item() == pytest.approx(official.item(), abs=1e-9)
    for a, b in zip(torch.autograd.grad(ours, [image, text]), torch.autograd.grad(official, [image, text])):
        assert (a - b).abs().max().item() <= 1e-6


def test_explicit_parameters_override_the_style() -> None:
    loss = ConVIRTLoss(ConVIRTLoss.Params(temperature=0.5, image_to_text_weight=0.6))
    assert (loss.temperature, loss.i2t_weight, loss.t2i_weight) == (0.5, 0.6, pytest.approx(0.4))
    loss = ConVIRTLoss(ConVIRTLoss.Params(style="mgca", image_to_text_weight=0.5))
    assert (loss.temperature, loss.i2t_weight, loss.t2i_weight) == (0.07, 0.5, 1.0)
    with pytest.raises(ValueError, match="negative weight"):
        ConVIRTLoss(ConVIRTLoss.Params(image_to_text_weight=1.5))


def test_two_identical_pairs_by_hand() -> None:
    """v = u = [e1, e1]: every logit is 1/τ, so each direction is log 2 and so is the λ-mix."""
    e = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    value = ConVIRTLoss(ConVIRTLoss.Params())(e, e, Positives.identity(2), NONE, NONE)
    assert value.item() == pytest.approx(math.log(2), abs=1e-12)
    summed = ConVIRTLoss(ConVIRTLoss.Params(style="mgca"))(e, e, Positives.identity(2), NONE, NONE)
    assert summed.item() == pytest.approx(2 * math.log(2), abs=1e-12)


def test_mined_positives_become_soft_targets_and_ignored_pairs_leave_the_denominator() -> None:
    """Through the contracts: pair (0, 1) positive → half the target on each; ignored → dropped."""
    generator = torch.Generator().manual_seed(2)
    image, text = leaves(generator, 3, 4)
    loss = ConVIRTLoss(ConVIRTLoss.Params(temperature=1.0, image_to_text_weight=1.0))  # image→text only
    logits = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t()
    affinity = torch.eye(3, dtype=torch.float64)
    affinity[0, 1] = 1.0
    mined = loss(image, text, Positives(affinity), NONE, NONE)
    log_p = torch.log_softmax(logits, dim=1)
    expected = -(0.5 * (log_p[0, 0] + log_p[0, 1]) + log_p[1, 1] + log_p[2, 2]) / 3
    assert mined.item() == pytest.approx(expected.item(), abs=1e-12)
    ignore = torch.zeros(3, 3, dtype=torch.bool)
    ignore[0, 1] = True
    dropped = loss(image, text, Positives(torch.eye(3, dtype=torch.float64), ignore), NONE, NONE)
    first = torch.logsumexp(logits[0, [0, 2]], 0) - logits[0, 0]
    rest = sum(torch.logsumexp(logits[i], 0) - logits[i, i] for i in (1, 2))
    assert dropped.item() == pytest.approx(((first + rest) / 3).item(), abs=1e-12)


def test_convirt_preset_equals_the_official_total_on_ragged_reports() -> None:
    dim, grid = 32, (2, 2)
    context = BuildContext(embed_dim=dim, image_size=16, patch_grid=grid, corpus=CORPUS)
    modules = build_preset(preset_config("convirt"), context)
    generator = torch.Generator().manual_seed(5)
    for _ in range(2):
        step = ragged_step(generator, batch=6, hidden=32, dim=dim, patches=4, image_size=16, corpus_size=len(CORPUS))
        ours = plugin_step(modules, step, grid, progress=0.5)
        assert set(ours.terms) == {"global"}
        text = modules.text.features(step.hidden, step.attention_mask, step.sentence_index).global_emb
        official = official_vilmedic(step.image_global, text)
        assert ours.total.item() == pytest.approx(official.item(), abs=1e-9)
        assert_close_gradients(gradients(ours.total, step, modules), gradients(official, step, modules))
