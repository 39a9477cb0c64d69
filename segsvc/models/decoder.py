"""A light transposed-convolution decoder, deepest features first.

Each stage doubles the resolution with a 2x2 stride-2 ConvTranspose2d (output (H - 1) * 2 + 2 = 2H, no
overlap, no checkerboard), concatenates the matching encoder skip and fuses both with a depthwise
separable convolution. It stops at H/2, the shallowest skip: the model's head is one more transposed
convolution straight to logits, so no feature map wider than the logits is ever stored at full
resolution (on a CPU those full-resolution tensors cost more memory traffic than arithmetic).
"""

from __future__ import annotations

import torch
from torch import nn

from segsvc.models.layers import DepthwiseSeparableConv

DECODER_CHANNELS = (96, 32, 24, 16)


class UpBlock(nn.Sequential):
    """2x upsampling: ConvTranspose2d(k=2, s=2), BatchNorm, ReLU6."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class DecoderStage(nn.Module):
    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = UpBlock(in_channels, out_channels)
        self.fuse = DepthwiseSeparableConv(out_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.up(x), skip], dim=1)  # (N, out + skip, 2H, 2W)
        return self.fuse(x)


class TransposedConvDecoder(nn.Module):
    """Upsamples the deepest encoder features (H/32) through the skips to the shallowest one's H/2."""

    def __init__(self, encoder_channels: tuple[int, ...], decoder_channels: tuple[int, ...] = DECODER_CHANNELS):
        super().__init__()
        if len(decoder_channels) != len(encoder_channels) - 1:
            raise ValueError(f"need {len(encoder_channels) - 1} decoder widths, got {len(decoder_channels)}")
        deepest_first = encoder_channels[::-1]
        in_channels = [deepest_first[0], *decoder_channels[:-1]]
        # e.g. (320 -> 96, skip 96), (96 -> 32, skip 32), (32 -> 24, skip 24), (24 -> 16, skip 16)
        self.stages = nn.ModuleList(
            DecoderStage(i, s, o) for i, s, o in zip(in_channels, deepest_first[1:], decoder_channels)
        )
        self.out_channels = decoder_channels[-1]

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        x, *shallower = skips[::-1]
        for stage, skip in zip(self.stages, shallower):
            x = stage(x, skip)  # (N, 96 + 96, H/16, W/16) ... (N, 16 + 16, H/2, W/2) inside
        return x  # (N, 16, H/2, W/2)
