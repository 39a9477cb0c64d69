"""Large test images made of real photographs: a mosaic at the scale the model was trained on, for trying
tiled inference (`segsvc.runtime.tiling`) on more pixels than any dataset image has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photo_mosaic(photos: list[Path], width: int, height: int, tile: tuple[int, int] = (480, 360)) -> np.ndarray:
    """A (height, width, 3) uint8 image of `photos` side by side, each at its own size (all must share one), at
    least 5 across and 6 down and as many more as it takes, cropped; the photos repeat in order when too few."""
    if not photos:
        raise ValueError("no photos to make a mosaic of")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
    across, down = max(5, -(-width // tile[0])), max(6, -(-height // tile[1]))
    rows = [np.concatenate([images[(across * r + c) % len(images)] for c in range(across)], axis=1) for r in range(down)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height, :width])
