"""The channels-last max pooling of frozen CPU passes gives PyTorch's numbers bit for bit."""

from __future__ import annotations

import torch
from torch import nn

from vlpbench.core.context import BuildContext
from vlpbench.models.cpu_pooling import ChannelsLastMaxPool, speed_up_cpu_pooling
from vlpbench.models.image_timm import TimmImageEncoder


def test_pooling_equals_pytorch_with_ties_and_odd_sizes() -> None:
    generator = torch.Generator().manual_seed(0)
    for shape in [(3, 8, 33, 17), (2, 64, 32, 32), (1, 4, 5, 6)]:
        # after a ReLU most windows tie at 0: the output must still be the same tensor
        x = torch.relu(torch.randn(shape, generator=generator)).round(decimals=1)
        pool = nn.MaxPool2d(3, 2, 1)
        with torch.no_grad():
            expected = pool(x)
            got = ChannelsLastMaxPool(pool)(x)
        assert torch.equal(got, expected)
        assert got.is_contiguous()  # the next convolution sees the usual NCHW layout


def test_gradients_take_pytorchs_own_path() -> None:
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    pool = nn.MaxPool2d(3, 2, 1)
    ChannelsLastMaxPool(pool)(x).square().sum().backward()
    expected = torch.autograd.grad(pool(x).square().sum(), x)[0]
    assert torch.equal(x.grad, expected)


def test_encoder_wraps_its_stem_pooling_and_keeps_its_numbers_and_state_dict() -> None:
    context = BuildContext(embed_dim=16, image_size=32, corpus=["no finding"])
    params = TimmImageEncoder.Params(arch="resnet18", patch_reduction=8, global_reduction=8)
    torch.manual_seed(0)
    encoder = TimmImageEncoder(params, context).eval()
    wrapped = [m for m in encoder.modules() if isinstance(m, ChannelsLastMaxPool)]
    assert len(wrapped) == 1
    torch.manual_seed(0)
    plain = TimmImageEncoder(params, context).eval()
    plain.backbone.maxpool = plain.backbone.maxpool.pool  # PyTorch's pooling alone
    assert list(encoder.state_dict()) == list(plain.state_dict())
    images = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        for got, expected in zip(encoder.feature_maps(images, min_stride=4), plain.feature_maps(images, min_stride=4)):
            assert torch.equal(got, expected)
    assert speed_up_cpu_pooling(encoder) == 0  # wrapping twice does nothing
