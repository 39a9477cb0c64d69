"""MobileNetV2 encoder (Sandler et al. 2018), built from the paper's (t, c, n, s) table.

`features` is a flat Sequential named as torchvision's `mobilenet_v2().features[:18]`, so ImageNet
weights in torchvision's layout load with strict=True, without key surgery.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from segsvc.models.layers import ConvBNReLU6, InvertedResidual

# t = expansion, c = out channels, n = repeats, s = stride of the first repeat   (Sandler et al. 2018, Table 2)
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
STEM_CHANNELS = 32
TORCHVISION_IMAGENET_URL = "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"


class MobileNetV2Encoder(nn.Module):
    """Returns five feature maps, shallow to deep, at reductions (2, 4, 8, 16, 32)."""

    def __init__(self, table: list[tuple[int, int, int, int]] = MOBILENET_V2):
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU6(3, STEM_CHANNELS, 3, stride=2)]
        in_channels, reduction = STEM_CHANNELS, 2
        taps, out_channels, reductions = [], [], []
        for row, (t, c, n, s) in enumerate(table):
            for i in range(n):
                stride = s if i == 0 else 1
                layers.append(InvertedResidual(in_channels, c, stride, expansion=t))
                in_channels, reduction = c, reduction * stride
            # A skip is the last block before the resolution halves again, and the deepest block.
            next_stride = table[row + 1][3] if row + 1 < len(table) else None
            if next_stride is None or next_stride > 1:
                taps.append(len(layers) - 1)
                out_channels.append(c)
                reductions.append(reduction)
        self.features = nn.Sequential(*layers)
        self.taps = tuple(taps)
        self.out_channels = tuple(out_channels)
        self.reductions = tuple(reductions)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                skips.append(x)
        return skips

    def load_imagenet(self, weights: str | Path) -> None:
        """Load torchvision-layout ImageNet weights: a local .safetensors/.pth file, or "imagenet" to download."""
        state = read_imagenet_state_dict(weights)
        own = set(self.state_dict())
        # torchvision's features.18 (1x1 conv to 1280) and classifier belong to the classifier head.
        state = {k: v for k, v in state.items() if k in own or not _is_head_key(k)}
        self.load_state_dict(state, strict=True)


def _is_head_key(key: str) -> bool:
    return key.startswith("classifier.") or key.startswith("features.18.")


def read_imagenet_state_dict(weights: str | Path) -> dict[str, torch.Tensor]:
    if str(weights) == "imagenet":  # downloaded once, then read from torch's cache (~/.cache/torch/hub/checkpoints)
        try:
            return torch.hub.load_state_dict_from_url(TORCHVISION_IMAGENET_URL, progress=False, weights_only=True)
        except OSError as error:
            # FileNotFoundError: the CLI prints it as one line, like any other missing file.
            raise FileNotFoundError(
                f"encoder_weights: imagenet: torchvision's MobileNetV2 weights are not in {torch.hub.get_dir()}/checkpoints "
                f"and could not be downloaded ({error}); offline, set encoder_weights to a local .safetensors or "
                ".pth file (e.g. ../shared/weights/mobilenet_v2_imagenet.safetensors), or to null to train from scratch"
            ) from error
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file not found: {path} (encoder_weights)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)
