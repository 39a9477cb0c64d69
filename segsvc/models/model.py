"""The segmentation network: MobileNetV2 encoder, transposed-convolution decoder and head."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from segsvc.io.modelfolder import ARCHITECTURE
from segsvc.models.decoder import DECODER_CHANNELS, TransposedConvDecoder
from segsvc.models.encoder import MobileNetV2Encoder
from segsvc.models.sizes import check_divisible


class SegmentationModel(nn.Module):
    """logits (N, K, H, W) for images (N, 3, H, W) with H and W multiples of 32."""

    def __init__(self, num_classes: int, decoder_channels: tuple[int, ...] = DECODER_CHANNELS):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.encoder = MobileNetV2Encoder()
        self.decoder = TransposedConvDecoder(self.encoder.out_channels, tuple(decoder_channels))
        # Logits straight from the H/2 features: (H/2 - 1) * 2 - 0 + 2 + 0 = H, each 2x2 output patch a
        # linear map of one feature vector.
        self.head = nn.ConvTranspose2d(self.decoder.out_channels, num_classes, kernel_size=2, stride=2)
        self.output_stride = self.encoder.reductions[-1]
        # Carried by save_model/load_model so that a saved model is all a service needs.
        self.class_names: list[str] = [str(i) for i in range(num_classes)]
        self.palette: list[tuple[int, int, int]] = default_palette(num_classes)
        self.ignore_index: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()):
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"expected images (N, 3, H, W), got shape {tuple(x.shape)}")
            check_divisible(x.shape[-2], x.shape[-1], self.output_stride)
        return self.head(self.decoder(self.encoder(x)))

    def config(self) -> dict:
        return {
            "architecture": ARCHITECTURE,
            "num_classes": self.num_classes,
            "decoder_channels": list(self.decoder_channels),
            "class_names": list(self.class_names),
            "palette": [list(c) for c in self.palette],
            "ignore_index": self.ignore_index,
        }

    @property
    def decoder_channels(self) -> tuple[int, ...]:
        return tuple(stage.up[0].out_channels for stage in self.decoder.stages)


def build_model(num_classes: int, encoder_weights: str | Path | None = None) -> SegmentationModel:
    """A fresh model; `encoder_weights` is a local torchvision-layout file, or "imagenet" to download."""
    model = SegmentationModel(num_classes)
    if encoder_weights is not None:
        model.encoder.load_imagenet(encoder_weights)
    return model


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct colours for classes without a palette of their own (PASCAL VOC's bit-interleaving scheme)."""
    palette = []
    for label in range(num_classes):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((r, g, b))
    return palette
