"""Large images as overlapping tiles: logits blended with a window across overlaps, finished block by block.

A whole 7200x5400 image through the model holds its activations and an (11, 5400, 7200) float32 logit map
at once (gigabytes). Tiles bound the model's memory by the tile; blending with a window that ramps down
towards each tile's edges (where the model saw the least context) leaves no seams; and each tile's part of
the image is handed back (to be argmaxed) as soon as no later tile touches it. What waits for a later tile
row is only the strip the next tile row overlaps, so the logit memory is bounded by that strip, not by the image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

# (top, left, bottom, right) of a tile -> its logits (K, bottom - top, right - left), which may be changed in place
TileLogits = Callable[[int, int, int, int], np.ndarray]


def tile_starts(length: int, tile_size: int, overlap: int, align: int = 32) -> list[int]:
    """Starts of the fewest tiles covering [0, length) with neighbours overlapping by at least `overlap`,
    spread evenly: the slack goes into every overlap alike (more context for every seam) rather than all
    into the last one. Every start is a multiple of `align` (the model's total stride), so each tile sees
    the same pixel grid as the whole image would; the last tile may end at the image's edge before
    `tile_size` (its start is rounded up to the grid)."""
    if tile_size % align or overlap % align or not 0 <= overlap < tile_size:
        raise ValueError(f"tile size {tile_size} and overlap {overlap} must be multiples of {align}, overlap < tile size")
    if length <= tile_size:
        return [0]
    last = -(-(length - tile_size) // align)  # the last tile's start, in grid steps
    stride = (tile_size - overlap) // align  # the longest step that keeps `overlap`
    steps = -(-last // stride)
    # floor(i * last / steps) steps apart by floor or ceil of last / steps, which is at most `stride`
    return [i * last // steps * align for i in range(steps + 1)]


def window_ramp(length: int, overlap: int, floor: float = 0.01, after: int | None = None) -> np.ndarray:
    """float32 (length,): a tile's blending weights along one axis, 1 in the middle; towards each end it
    falls linearly from 1 at 3/4 of that end's overlap to `floor` at 1/4 of it and stays there (the start's
    overlap is `overlap`, the end's `after`, by default the same). A tile's outermost pixels saw the least
    context (the model's predictions agree with whole-image ones only ~150 px inside a tile), so across an
    overlap each tile hands over to its neighbour before its own edge. The floor keeps the image's own
    borders, covered by one tile only, weighted. A tile's window is the outer product of its two ramps."""
    position = np.arange(length) + 0.5
    ramp = np.ones(length, np.float32)
    for distance, width in ((position, overlap), (length - position, overlap if after is None else after)):
        if width:
            np.minimum(ramp, np.clip((distance - width / 4) / (width / 2), floor, 1.0), out=ramp, casting="unsafe")
    return ramp


def axis_ramps(length: int, starts: list[int], tile_size: int, overlap: int) -> list[np.ndarray]:
    """Each tile's `window_ramp` along one axis: each end hands over across the overlap the tile actually
    shares with its neighbour there (at least `overlap`; `tile_starts` spreads the slack into every seam),
    so a tile's edge pixels, which saw the least context, weigh less where there is room. The image's own
    ends use `overlap`: there the tiles of one row (or column) share the same ramp, which cancels out of
    their weighted mean; only a short last tile's edge meets the tile before it, both near the floor,
    and those few pixels get about the plain mean of the two."""
    ends = [min(start + tile_size, length) for start in starts]
    ramps = []
    for i, (start, end) in enumerate(zip(starts, ends)):
        before = ends[i - 1] - start if i > 0 else overlap
        after = end - starts[i + 1] if i + 1 < len(starts) else overlap
        ramps.append(window_ramp(end - start, before, after=after))
    return ramps


def summed_ramps(length: int, starts: list[int], ramps: list[np.ndarray]) -> np.ndarray:
    """float32 (length,): the tiles' ramps along one axis, summed. The windows are outer products of ramps
    and the tiles a grid of row starts x column starts, so all tiles' windows summed at pixel (y, x) are
    the rows' sum at y times the columns' sum at x."""
    total = np.zeros(length, np.float32)
    for start, ramp in zip(starts, ramps):
        total[start : start + len(ramp)] += ramp
    return total


def blended_blocks(
    height: int, width: int, tile_size: int, overlap: int, tile_logits: TileLogits, carry_dtype: type = np.float16
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Run `tile_logits` over a tile grid and yield (top, left, logits (K, rows, columns) float32): the
    window-weighted mean of the overlapping tiles' logits over that block of the image. The blocks cover
    the image, each pixel once; each is a part of one tile's logits that no later tile touches.

    Within a tile row the blending is float32, a tile at a time. The rows the next tile row overlaps wait
    as window-weighted sums of `carry_dtype`, (K, at most `tile_size` - 32, width): float16 by default,
    half the memory (25 MB for 11 classes x 160 x 7200, the most a 5400-high image shares at 896/128); its
    3 significant digits can change an argmax only where two classes' blended logits are within about
    0.01 of each other. Pixels that one tile alone covers are that tile's logits, untouched.
    """
    rows, columns = tile_starts(height, tile_size, overlap), tile_starts(width, tile_size, overlap)
    row_ramps, column_ramps = axis_ramps(height, rows, tile_size, overlap), axis_ramps(width, columns, tile_size, overlap)
    row_weights, column_weights = summed_ramps(height, rows, row_ramps), summed_ramps(width, columns, column_ramps)
    most_shared = max((min(top + tile_size, height) - below for top, below in zip(rows, rows[1:])), default=0)
    carry = None  # (K, most_shared, width) of carry_dtype, allocated once K is known
    carried = 0  # carry's first rows hold this many of the current tile row's, as sums from the rows above
    for i, top in enumerate(rows):
        bottom = min(top + tile_size, height)
        finished_rows = (rows[i + 1] if i + 1 < len(rows) else bottom) - top  # no later tile row touches these
        previous, previous_right = None, 0  # the columns the tile to the left shares with the next, blended so far
        for j, left in enumerate(columns):
            right = min(left + tile_size, width)
            finished_columns = (columns[j + 1] if j + 1 < len(columns) else right) - left
            shared_columns = previous_right - left if previous is not None else 0  # with the tile to the left
            tile = tile_logits(top, left, bottom, right)

            # pixels [alone_rows, alone_columns] are covered by this tile alone: they stay its logits, unweighted
            alone_rows = slice(min(carried, finished_rows), finished_rows)
            alone_columns = slice(min(shared_columns, finished_columns), finished_columns)
            for part_rows, part_columns in around(alone_rows, alone_columns):  # weighted by the window there
                tile[:, part_rows, part_columns] *= np.outer(row_ramps[i][part_rows], column_ramps[j][part_columns])
            if previous is not None:
                tile[:, :, :shared_columns] += previous
            if carried:  # columns left of `previous_right` came in through `previous`; class by class: small temporaries
                for channel, carried_sums in zip(tile, carry):
                    channel[:carried, shared_columns:] += carried_sums[:carried, left + shared_columns : right]

            # the finished block's parts that other tiles also cover: from weighted sums to the weighted mean
            for part_rows, part_columns in (
                (slice(0, alone_rows.start), slice(0, finished_columns)),
                (alone_rows, slice(0, alone_columns.start)),
            ):
                weights = np.outer(row_weights[top:bottom][part_rows], column_weights[left:right][part_columns])
                tile[:, part_rows, part_columns] /= weights
            yield top, left, tile[:, :finished_rows, :finished_columns]

            # The rows the next tile row shares go over the ones this row received, in the same columns:
            # every column left of `right` has been read (here or by an earlier tile) before it is overwritten.
            if finished_rows < bottom - top:
                if carry is None:
                    carry = np.empty((tile.shape[0], most_shared, width), carry_dtype)
                shared = tile[:, finished_rows:, :finished_columns]
                carry[:, : shared.shape[1], left : left + finished_columns] = shared
            # only the shared columns wait (a copy), so the whole tile is freed before the next one runs
            previous, previous_right = tile[:, :, finished_columns:].copy(), right
        carried = bottom - top - finished_rows


def around(rows: slice, columns: slice) -> list[tuple[slice, slice]]:
    """The parts of a 2-D array outside [rows, columns] (slices with explicit start and stop)."""
    return [
        (slice(0, rows.start), slice(None)),
        (slice(rows.stop, None), slice(None)),
        (rows, slice(0, columns.start)),
        (rows, slice(columns.stop, None)),
    ]
