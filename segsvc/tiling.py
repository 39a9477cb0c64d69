"""Large images as overlapping tiles: logits blended with a window across overlaps, finished band by band.

A whole 7200x5400 image through the model holds its activations and an (11, 5400, 7200) float32 logit map
at once (gigabytes). Tiles bound the model's memory by the tile; blending with a window that ramps down
towards each tile's edges (where the model saw the least context) leaves no seams; and the blended
logits live only for one band of tile rows, which is handed back (to be argmaxed) as soon as no later
tile touches it, so the logit memory is bounded by the band, not by the image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

# (top, left, bottom, right) of a tile -> its logits (K, bottom - top, right - left)
TileLogits = Callable[[int, int, int, int], np.ndarray]


def tile_starts(length: int, tile_size: int, overlap: int, align: int = 32) -> list[int]:
    """Starts of tiles covering [0, length): `tile_size - overlap` apart, the last one moved back so that
    it ends near `length`. Every start is a multiple of `align` (the model's total stride), so each tile
    sees the same pixel grid as the whole image would; a tile may end before `tile_size` at the border."""
    if tile_size % align or overlap % align or not 0 <= overlap < tile_size:
        raise ValueError(f"tile size {tile_size} and overlap {overlap} must be multiples of {align}, overlap < tile size")
    if length <= tile_size:
        return [0]
    starts = list(range(0, length - tile_size, tile_size - overlap))
    last = -(-(length - tile_size) // align) * align  # the last full tile's start, rounded up to the grid
    if last > starts[-1]:
        starts.append(last)
    return starts


def blend_window(height: int, width: int, overlap: int, floor: float = 0.01) -> np.ndarray:
    """float32 (height, width): 1 in the middle; towards each edge it falls linearly from 1 at
    3/4 `overlap` to `floor` at `overlap` / 4 and stays there. A tile's outermost pixels saw the least
    context (the model's predictions agree with whole-image ones only ~150 px inside a tile), so across an
    overlap each tile hands over to its neighbour before its own edge. The floor keeps the image's own
    borders, covered by one tile only, weighted."""

    def ramp(n: int) -> np.ndarray:
        if overlap == 0:
            return np.ones(n, np.float32)
        distance = np.minimum(np.arange(n) + 0.5, n - np.arange(n) - 0.5)  # to the nearer edge
        return np.clip((distance - overlap / 4) / (overlap / 2), floor, 1.0).astype(np.float32)

    return np.outer(ramp(height), ramp(width))


def blended_bands(
    height: int, width: int, tile_size: int, overlap: int, tile_logits: TileLogits, dtype: type = np.float16
) -> Iterator[tuple[int, np.ndarray]]:
    """Run `tile_logits` over a tile grid and yield (top, logits (K, rows, width)): the window-weighted
    mean of the overlapping tiles' logits for image rows [top, top + rows), bands in order, covering the image.

    Only one band of tile rows, (K, tile_size, width) of `dtype`, is alive at a time; a yielded band is
    overwritten after the consumer's next step, so copy what you keep. Each tile's weighted logits are
    computed in float32 and summed into the band in `dtype`: float16 by default, half the memory (0.12 GB
    for 11 classes x 768 x 7200); its 3 significant digits can change an argmax only where two classes'
    blended logits are within about 0.01 of each other.
    """
    rows, columns = tile_starts(height, tile_size, overlap), tile_starts(width, tile_size, overlap)
    band_height = min(tile_size, height)
    weight = np.zeros((band_height, width), np.float32)
    logits = None  # (K, band_height, width), allocated once K is known
    windows: dict[tuple[int, int], np.ndarray] = {}
    for i, top in enumerate(rows):
        bottom = min(top + tile_size, height)
        for left in columns:
            right = min(left + tile_size, width)
            tile = tile_logits(top, left, bottom, right)
            if logits is None:
                logits = np.zeros((tile.shape[0], band_height, width), dtype)
            shape = (bottom - top, right - left)
            window = windows.setdefault(shape, blend_window(*shape, overlap))
            tile *= window
            logits[:, : shape[0], left:right] += tile
            weight[: shape[0], left:right] += window
        done = rows[i + 1] - top if i + 1 < len(rows) else bottom - top  # rows no later tile touches
        np.divide(logits[:, :done], weight[:done], out=logits[:, :done])
        yield top, logits[:, :done]
        # slide the band down: the rows still open move to the top, the rest starts from zero; class by
        # class, so the temporary copy is one class's rows, not the band's
        keep = band_height - done
        for channel in (*logits, weight):
            channel[:keep] = channel[done:].copy()
            channel[keep:] = 0
