"""The detection head's box branch: a softplus keeps a gradient where a ReLU's output is zero."""

from __future__ import annotations

import pytest
import torch

from vlpbench.tasks.detection import Detection, FCOSHead


def box_gradient(activation: str) -> float:
    """Gradient norm reaching the box branch when its raw output is negative everywhere."""
    torch.manual_seed(0)
    head = FCOSHead([8], channels=8, classes=1, box_activation=activation)
    with torch.no_grad():
        head.box.weight.zero_()
        head.box.bias.fill_(-3.0)  # every location predicts distances below zero before the activation
    maps = [torch.randn(2, 8, 8, 8)]
    boxes = torch.tensor([[[4.0, 4.0, 20.0, 24.0]], [[10.0, 8.0, 30.0, 30.0]]])
    classes, valid = torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.bool)
    Detection(Detection.Params(box_activation=activation)).loss(head, maps, boxes, classes, valid, 32).backward()
    return float(head.box.weight.grad.norm() + head.box.bias.grad.norm())


def test_a_relu_box_branch_below_zero_gets_no_gradient_and_a_softplus_one_does() -> None:
    assert box_gradient("relu") == 0.0  # stuck: the box loss cannot move it
    assert box_gradient("softplus") > 1e-3


def test_softplus_is_the_default_and_the_choice_is_validated() -> None:
    assert Detection.Params().box_activation == "softplus"
    with pytest.raises(ValueError):
        Detection.Params(box_activation="exp")
    head = FCOSHead([8], channels=8, classes=1)
    _, ltrb, _, _ = head([torch.randn(1, 8, 8, 8)])
    assert bool((ltrb > 0).all())  # softplus distances are strictly positive
