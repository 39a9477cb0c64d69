"""The one preprocessing order: normalise -> pad right/bottom to a multiple of 32 -> model -> crop -> argmax.

Training, evaluation, export and the service all call these functions, so every path gives the same mask.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn

from segsvc.images import to_rgb_array
from segsvc.sizes import padded_size

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MULTIPLE = 32


class Backend(Protocol):
    """Anything that maps a float32 batch (N, 3, H, W) to logits (N, K, H, W), e.g. an ONNX Runtime session."""

    def run_batch(self, batch: np.ndarray) -> np.ndarray: ...


def normalize(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (H, W, 3) with ImageNet mean/std."""
    return (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def pad_to_multiple(array: np.ndarray, multiple: int = MULTIPLE, value: float = 0) -> np.ndarray:
    """Pad the first two axes (H, W) on the right/bottom to multiples of `multiple`."""
    height, width = array.shape[:2]
    pad = [(0, padded_size(height, multiple) - height), (0, padded_size(width, multiple) - width)]
    pad += [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, constant_values=value)


def as_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return to_rgb_array(image)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 array (H, W, 3), got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image has no pixels: shape {image.shape}")
    return image


def preprocess(image: Image.Image | np.ndarray) -> np.ndarray:
    """An image of any size -> float32 batch (1, 3, H', W') with H', W' padded to multiples of 32."""
    padded = pad_to_multiple(normalize(as_rgb(image)))
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None])


def run_logits(model: nn.Module | Backend, batch: np.ndarray) -> np.ndarray:
    if isinstance(model, nn.Module):
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            # channels_last roughly halves CPU latency of the depthwise convolutions (see benchmarks/).
            inputs = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
            logits = model(inputs).float().cpu().numpy()
        model.train(was_training)
        return logits
    return model.run_batch(batch)


def predict(
    model: nn.Module | Backend, image: Image.Image | np.ndarray, confidence: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class ids (H, W) uint8 for an RGB image of any size, and with `confidence` the per-pixel maximum
    softmax probability (H, W) float32 in [0, 1] (else None)."""
    rgb = as_rgb(image)
    height, width = rgb.shape[:2]
    logits = run_logits(model, preprocess(rgb))[0, :, :height, :width]
    mask = logits.argmax(axis=0).astype(np.uint8)
    if not confidence:
        return mask, None
    # max softmax = 1 / sum_k exp(logit_k - max_k logit): no full softmax tensor needed
    shifted = logits - logits.max(axis=0, keepdims=True)
    return mask, (1.0 / np.exp(shifted).sum(axis=0)).astype(np.float32)


def predict_mask(model: nn.Module | Backend, image: Image.Image | np.ndarray) -> np.ndarray:
    """Class ids (H, W) uint8 for an RGB image of any size."""
    return predict(model, image)[0]
