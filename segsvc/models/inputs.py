"""What the network takes: RGB pixels normalised with ImageNet's mean and std, padded right/bottom to a
multiple of 32 (its output stride). Plain numpy: training's transforms and inference's preprocessing
(`segsvc.runtime.predict`) both build on these, and a serving worker imports them without torch."""

from __future__ import annotations

import numpy as np

from segsvc.models.sizes import padded_size

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MULTIPLE = 32


def normalize(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (H, W, 3) with ImageNet mean/std."""
    return (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def pad_to_multiple(array: np.ndarray, multiple: int = MULTIPLE, value: float = 0) -> np.ndarray:
    """Pad the first two axes (H, W) on the right/bottom to multiples of `multiple`."""
    height, width = array.shape[:2]
    pad = [(0, padded_size(height, multiple) - height), (0, padded_size(width, multiple) - width)]
    pad += [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, constant_values=value)
