"""Large test images made of real photographs: a mosaic at the scale the model was trained on, for trying
tiled inference (`segsvc.runtime.tiling`) on more pixels than any dataset image has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photo_mosaic(photos: list[Path], width: int, height: int) -> np.ndarray:
    """A (height, width, 3) uint8 image of `photos` side by side at their own size (one size for all), at least 5
    across and 6 down and as many more as it takes, cropped; the photos repeat in order when too few."""
    if not photos:
        raise ValueError("no photos to make a mosaic of")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
    if len({image.shape for image in images}) > 1:
        raise ValueError(f"photos of more than one size ({sorted({image.shape[:2] for image in images})}): a mosaic needs one")
    tile_height, tile_width = images[0].shape[:2]
    across, down = max(5, -(-width // tile_width)), max(6, -(-height // tile_height))
    rows = [np.concatenate([images[(across * r + c) % len(images)] for c in range(across)], axis=1) for r in range(down)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height, :width])
