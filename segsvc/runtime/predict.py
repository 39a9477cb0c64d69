"""The one preprocessing order: normalise -> pad right/bottom to a multiple of 32 -> model -> crop -> argmax.

Training, evaluation, export and the service all call these functions, so every path gives the same mask.
Images over `TILE_ABOVE_PIXELS` run the same order tile by tile (`segsvc.runtime.tiling`), so memory is bounded
by the tile, not by the image.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from segsvc.io.images import to_rgb_array
from segsvc.models.inputs import MULTIPLE, normalize
from segsvc.models.sizes import padded_size
from segsvc.runtime.tiling import blended_blocks

# Measured (2-core CPU, ONNX Runtime, 1 thread; docs/performance.md, Large images; benchmarks/tile_sweep.py): the model's
# argmax agrees with the whole image's only ~150 px inside a tile edge, so tiles overlap by at least 128 px,
# spread evenly, each seam blended across its whole overlap (segsvc.runtime.tiling). 896/128 tiles agree with
# whole-image inference on 99.7% of a 2048x2048 CamVid mosaic and 99.4% of a 4096x3072 one, and compute
# 1.45x the pixels of a 7200x5400 image (70 tiles), in 0.75x the time of 768/192 (130 tiles, 98.7% on
# 4096x3072). Larger tiles agree more for fewer pixels but cost more memory and more per pixel (cache):
# 1024/192 tiles peaked over 1.5 GB in a service worker. Up to 4 MP an image runs whole.
TILE_SIZE = 896
TILE_OVERLAP = 128
TILE_ABOVE_PIXELS = 2048 * 2048

if TYPE_CHECKING:  # the graph engines run without torch (segsvc.runtime); a PyTorch model needs it
    from torch import nn


class Backend(Protocol):
    """Anything that maps a float32 batch (N, 3, H, W) to logits (N, K, H, W), e.g. an ONNX Runtime session."""

    def run_batch(self, batch: np.ndarray) -> np.ndarray: ...


# NORMALIZED[c, v]: `normalize` of the value v in channel c, computed by `normalize` itself
NORMALIZED = np.ascontiguousarray(normalize(np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2))[:, 0, :].T)


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
    """An image of any size -> float32 batch (1, 3, H', W') with H', W' padded to multiples of 32 (with 0,
    after normalisation): `normalize` then `pad_to_multiple`, bit for bit, as one table lookup per channel
    written straight into the padded batch (7x faster than the float arithmetic and copies)."""
    rgb = as_rgb(image)
    height, width = rgb.shape[:2]
    batch = np.zeros((1, 3, padded_size(height, MULTIPLE), padded_size(width, MULTIPLE)), np.float32)
    for channel in range(3):
        np.take(NORMALIZED[channel], rgb[:, :, channel], out=batch[0, channel, :height, :width])
    return batch


def run_logits(model: nn.Module | Backend, batch: np.ndarray) -> np.ndarray:
    if hasattr(model, "run_batch"):  # an engine (segsvc.runtime)
        return model.run_batch(batch)
    from segsvc.runtime.torch_engine import run_torch

    return run_torch(model, batch)


def predict(
    model: nn.Module | Backend,
    image: Image.Image | np.ndarray,
    confidence: bool = False,
    tile_size: int = TILE_SIZE,
    tile_overlap: int = TILE_OVERLAP,
    tile_above: int = TILE_ABOVE_PIXELS,
    before_tile: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class ids (H, W) uint8 for an RGB image of any size, and with `confidence` the per-pixel maximum
    softmax probability (H, W) float32 in [0, 1] (else None).

    Images with more than `tile_above` pixels run as `tile_size` tiles overlapping by `tile_overlap`
    (multiples of 32), their logits blended (`segsvc.runtime.tiling`); smaller ones run whole. `before_tile`, if
    given, is called before each tile: it may raise to stop the image (a service whose client has gone) or
    block while more urgent work runs.
    """
    rgb = as_rgb(image)
    height, width = rgb.shape[:2]
    if height * width > tile_above:
        return predict_tiled(model, rgb, confidence, tile_size, tile_overlap, before_tile)
    logits = run_logits(model, preprocess(rgb))[0, :, :height, :width]
    mask = argmax_classes(logits)
    return mask, max_softmax(logits) if confidence else None


def predict_tiled(
    model: nn.Module | Backend,
    rgb: np.ndarray,
    confidence: bool,
    tile_size: int,
    tile_overlap: int,
    before_tile: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`predict` over overlapping tiles; each tile is normalised and padded on its own, so no float copy
    of the whole image exists, and each finished block of blended logits is argmaxed and dropped.
    `before_tile` runs before each tile (see `predict`)."""
    height, width = rgb.shape[:2]
    mask = np.empty((height, width), np.uint8)
    scores = np.empty((height, width), np.float32) if confidence else None

    def tile_logits(top: int, left: int, bottom: int, right: int) -> np.ndarray:
        if before_tile is not None:
            before_tile()
        return run_logits(model, preprocess(rgb[top:bottom, left:right]))[0, :, : bottom - top, : right - left]

    if hasattr(model, "prepare"):  # an engine that compiles per shape: the tiles' shape, once, before them all
        model.prepare((1, 3, padded_size(min(tile_size, height), MULTIPLE), padded_size(min(tile_size, width), MULTIPLE)))
    try:
        for top, left, logits in blended_blocks(height, width, tile_size, tile_overlap, tile_logits):
            block = np.s_[top : top + logits.shape[1], left : left + logits.shape[2]]
            mask[block] = argmax_classes(logits)
            if scores is not None:
                scores[block] = max_softmax(logits)
            del logits
    finally:  # also when `before_tile` stopped the image
        if hasattr(model, "release_memory"):  # a backend holding buffers between runs (ONNX Runtime's arena)
            model.release_memory()
        return_memory_to_os()
    return mask, scores


def argmax_classes(logits: np.ndarray) -> np.ndarray:
    """`logits.argmax(axis=0)` as uint8 for (K, H, W) float32, ties to the lowest class like np.argmax, as
    a loop over classes of whole-plane comparisons: np.argmax walks K per pixel (11 x 360 x 480 logits:
    8.3 -> 0.9 ms as ONNX Runtime lays them out, 6.3 -> 4.3 ms in PyTorch's channels_last)."""
    best = logits[0].copy()
    index = np.zeros(best.shape, np.uint8)
    better = np.empty(best.shape, bool)
    step = np.empty(best.shape, np.uint8)
    for k in range(1, len(logits)):
        np.greater(logits[k], best, out=better)  # strictly: a tie keeps the earlier class
        # index = k where better: k exceeds every earlier index, so a maximum does it without a branchy masked copy
        np.multiply(better, np.uint8(k), out=step)
        np.maximum(index, step, out=index)
        np.maximum(best, logits[k], out=best)
    return index


def max_softmax(logits: np.ndarray) -> np.ndarray:
    """Logits (K, H, W) -> the largest softmax probability (H, W) float32."""
    # max softmax = 1 / sum_k exp(logit_k - max_k logit): no full softmax tensor needed
    shifted = logits - logits.max(axis=0, keepdims=True)
    return (1.0 / np.exp(shifted).sum(axis=0)).astype(np.float32)


def return_memory_to_os() -> None:
    """Hand freed heap pages back to the OS (glibc `malloc_trim`), so that a worker that just ran a large
    image drops back to its idle size; PyTorch's CPU allocator and ONNX Runtime's arena (once released)
    allocate with malloc. A no-op where the C library has no malloc_trim."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the process already runs with
    except (AttributeError, OSError, TypeError):
        return
    trim(0)


def predict_mask(
    model: nn.Module | Backend,
    image: Image.Image | np.ndarray,
    tile_size: int = TILE_SIZE,
    tile_overlap: int = TILE_OVERLAP,
    tile_above: int = TILE_ABOVE_PIXELS,
) -> np.ndarray:
    """Class ids (H, W) uint8 for an RGB image of any size (large ones as blended tiles, see `predict`)."""
    return predict(model, image, False, tile_size, tile_overlap, tile_above)[0]
