from __future__ import annotations

import pytest
import torch
from torch import nn

from segsvc.models.layers import DepthwiseSeparableConv, InvertedResidual


def conv_weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("k,c_in,c_out", [(3, 32, 64), (3, 144, 24), (5, 16, 16)])
def test_depthwise_separable_parameter_saving(k, c_in, c_out):
    separable = DepthwiseSeparableConv(c_in, c_out, k)
    standard = nn.Conv2d(c_in, c_out, k, bias=False)
    assert conv_weights(separable) == k * k * c_in + c_in * c_out
    assert conv_weights(standard) == k * k * c_in * c_out
    assert conv_weights(separable) < conv_weights(standard)
    x = torch.randn(2, c_in, 17, 17)
    assert separable(x).shape == (2, c_out, 17, 17)


def test_pointwise_convolution_expands_and_projects_channels():
    block = InvertedResidual(24, 24, stride=1, expansion=6)
    expand, depthwise, project = block.conv[0][0], block.conv[1][0], block.conv[2]
    assert expand.kernel_size == (1, 1) and (expand.in_channels, expand.out_channels) == (24, 144)
    assert depthwise.kernel_size == (3, 3) and depthwise.groups == 144
    assert project.kernel_size == (1, 1) and (project.in_channels, project.out_channels) == (144, 24)
    assert isinstance(block.conv[0][2], nn.ReLU6) and isinstance(block.conv[1][2], nn.ReLU6)
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in block.conv[2:])  # linear bottleneck


def test_expansion_one_has_no_expand_layer():
    block = InvertedResidual(32, 16, stride=1, expansion=1)
    assert block.conv[0][0].groups == 32 and len(block.conv) == 3


@pytest.mark.parametrize(
    "c_in,c_out,stride,residual", [(24, 24, 1, True), (24, 32, 1, False), (24, 24, 2, False), (16, 24, 2, False)]
)
def test_residual_only_when_stride_one_and_channels_match(c_in, c_out, stride, residual):
    block = InvertedResidual(c_in, c_out, stride, expansion=6).eval()
    assert block.use_residual is residual
    x = torch.randn(1, c_in, 16, 16)
    y = block(x)
    assert y.shape == (1, c_out, 16 // stride, 16 // stride)
    if residual:
        assert torch.allclose(y, x + block.conv(x))
