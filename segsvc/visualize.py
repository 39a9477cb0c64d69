"""Colouring masks and blending them over images, for people to look at."""

from __future__ import annotations

import numpy as np


def colorize(mask: np.ndarray, palette: list[tuple[int, int, int]]) -> np.ndarray:
    """Class ids (H, W) -> RGB (H, W, 3); ids outside the palette (void) are black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[mask.astype(np.uint8)]


def overlay(image: np.ndarray, mask: np.ndarray, palette: list[tuple[int, int, int]], alpha: float = 0.5) -> np.ndarray:
    """The image with the coloured mask blended on it (alpha = mask weight)."""
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(mask, palette).astype(np.float32)
    return blended.round().clip(0, 255).astype(np.uint8)


def palettized(mask: np.ndarray, palette: list[tuple[int, int, int]]):
    """A mode "P" PIL image: one byte per pixel (the class id), the class colours attached as its palette."""
    from PIL import Image

    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    flat = [v for colour in palette for v in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image
