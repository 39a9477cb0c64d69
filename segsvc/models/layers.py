"""Building blocks of MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018) and of our decoder.

Submodule layout follows torchvision's `mobilenet_v2`, so its state dict loads with strict=True.
"""

from __future__ import annotations

import torch
from torch import nn

from segsvc.models.sizes import same_padding


class ConvBNReLU6(nn.Sequential):
    """Convolution (no bias, BN follows), BatchNorm, ReLU6; 'same' padding for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, same_padding(kernel_size), groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = out_channels


class DepthwiseSeparableConv(nn.Sequential):
    """A KxK depthwise convolution (one filter per channel) then a 1x1 pointwise one that mixes channels.

    Weights: K*K*C_in + C_in*C_out, against K*K*C_in*C_out for a standard convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__(
            ConvBNReLU6(in_channels, in_channels, kernel_size, stride, groups=in_channels),  # depthwise
            ConvBNReLU6(in_channels, out_channels, 1),  # pointwise
        )


class InvertedResidual(nn.Module):
    """Expand with a 1x1 convolution, filter with a 3x3 depthwise one, project back with a linear 1x1.

    The block is narrow at its ends and wide in the middle (the inverse of a ResNet bottleneck); the
    projection has no activation because ReLU on a low-dimensional space destroys information.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden_channels = in_channels * expansion
        self.stride = stride
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNReLU6(in_channels, hidden_channels, 1))  # expand
        layers += [
            ConvBNReLU6(hidden_channels, hidden_channels, 3, stride, groups=hidden_channels),  # depthwise
            nn.Conv2d(hidden_channels, out_channels, 1, bias=False),  # project
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)
