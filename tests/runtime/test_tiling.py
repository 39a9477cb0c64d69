"""Tiled inference for large images: the tile grid, the blending window, agreement with the whole image."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image

import segsvc
from segsvc.runtime.predict import argmax_classes, predict, predict_mask
from segsvc.runtime.tiling import axis_ramps, blended_blocks, tile_starts, window_ramp
from tests.conftest import camvid_mosaic

WHOLE = 10**12  # a `tile_above` no image reaches: the whole-image path


@pytest.fixture(scope="module")
def model():
    return segsvc.load_default_model()


def test_tile_starts_cover_the_image_on_the_32_grid():
    for length in (1, 700, 768, 769, 2048, 5400, 7200):
        starts = tile_starts(length, 768, 192)
        assert starts[0] == 0 and all(s % 32 == 0 for s in starts)
        assert min(starts[-1] + 768, length) == length  # the last tile reaches the end
        assert all(b - a <= 768 - 192 for a, b in zip(starts, starts[1:]))  # neighbours overlap >= 192
        assert len(starts) == 1 or len(starts) - 1 == -(-(length - 768) // (768 - 192))  # the fewest tiles
    assert tile_starts(5400, 768, 192)[-1] == 4640  # 5400 - 768 = 4632, up to the grid: a 760-row last tile
    # spread evenly: 7200 needs 13 tiles at 576 apart (the old grid put 96 px between the last two); now
    # every pair of neighbours overlaps by 224-256
    assert np.diff(tile_starts(7200, 768, 192)).tolist() == [512, 544, 544, 544, 512, 544, 544, 544, 512, 544, 544, 544]
    with pytest.raises(ValueError, match="multiples of 32"):
        tile_starts(1000, 700, 64)


def test_window_is_one_inside_and_floored_at_the_edges():
    ramp = window_ramp(768, 192)
    assert ramp[384] == 1 and ramp[144:624].min() == 1
    assert ramp[0] == ramp[-1] == pytest.approx(0.01) and ramp.min() > 0
    assert np.all(np.diff(ramp[:384]) >= 0) and np.all(np.diff(ramp[384:]) <= 0)  # rises towards the middle
    ramp = window_ramp(768, 192, after=320)  # each end its own overlap: 1 from 144 to 768 - 240, the floor from about 768 - 80
    assert ramp[144:528].min() == 1 and ramp[528] < 1 and ramp[685] > 0.01 and ramp[686:].max() == pytest.approx(0.01)


def test_each_seam_hands_over_across_its_own_overlap():
    starts = tile_starts(2048, 896, 128)  # spread evenly: 0, 576, 1152, so neighbours share 320, not 128
    assert starts == [0, 576, 1152]
    ramps = axis_ramps(2048, starts, 896, 128)
    np.testing.assert_array_equal(ramps[0], window_ramp(896, 128, after=320))  # the image's own edge: 128
    np.testing.assert_array_equal(ramps[1], window_ramp(896, 320))
    np.testing.assert_array_equal(ramps[2], window_ramp(896, 320, after=128))
    # uneven seams: 0, 288, 608, 896, 1216 share 224, 192, 224, 192; the last tile is 484 long
    ramps = axis_ramps(1700, tile_starts(1700, 512, 128), 512, 128)
    np.testing.assert_array_equal(ramps[1], window_ramp(512, 224, after=192))
    np.testing.assert_array_equal(ramps[4], window_ramp(484, 192, after=128))


def blend(height: int, width: int, tile_size: int, overlap: int, tile_logits, carry_dtype=np.float16) -> np.ndarray:
    """`blended_blocks` put together into (K, height, width), checking that the blocks cover each pixel once."""
    out, covered = None, np.zeros((height, width), np.int32)
    for top, left, block in blended_blocks(height, width, tile_size, overlap, tile_logits, carry_dtype):
        assert block.dtype == np.float32
        if out is None:
            out = np.zeros((block.shape[0], height, width), np.float32)
        out[:, top : top + block.shape[1], left : left + block.shape[2]] = block
        covered[top : top + block.shape[1], left : left + block.shape[2]] += 1
    np.testing.assert_array_equal(covered, 1)
    return out


def dense_blend(height: int, width: int, tile_size: int, overlap: int, tile_logits) -> np.ndarray:
    """The window-weighted mean the plain way: every tile's weighted logits summed over the whole image, in float64."""
    sums, weights = 0.0, 0.0
    rows, columns = tile_starts(height, tile_size, overlap), tile_starts(width, tile_size, overlap)
    for top, row_ramp in zip(rows, axis_ramps(height, rows, tile_size, overlap)):
        for left, column_ramp in zip(columns, axis_ramps(width, columns, tile_size, overlap)):
            bottom, right = min(top + tile_size, height), min(left + tile_size, width)
            window = np.outer(row_ramp, column_ramp).astype(np.float64)
            place = [(top, height - bottom), (left, width - right)]
            sums = sums + np.pad(tile_logits(top, left, bottom, right) * window, [(0, 0), *place])
            weights = weights + np.pad(window, place)
    return sums / weights


# (height, width, tile size, overlap): one tile row; pixels under three tile rows and three tile columns
# (rows and columns 0, 192, 416); five tile columns, not all the same distance apart; another grid; one tile for all
GRIDS = [(400, 1700, 512, 128), (900, 928, 512, 128), (900, 1700, 512, 128), (1000, 1300, 512, 128), (300, 200, 512, 128)]


@pytest.mark.parametrize("height, width, tile_size, overlap", GRIDS)
def test_blocks_are_the_window_weighted_mean(height, width, tile_size, overlap):
    """Each tile sees different logits; the blocks equal the plain window-weighted mean, float32 up to its
    rounding, float16 (the default: the rows waiting for the next tile row stored in half the memory) to 3 digits."""

    def tile_logits(top: int, left: int, bottom: int, right: int) -> np.ndarray:
        rng = np.random.default_rng(top * 10**5 + left)
        return rng.normal(0, 4, (3, bottom - top, right - left)).astype(np.float32)

    expected = dense_blend(height, width, tile_size, overlap, tile_logits)
    for dtype, tolerance in ((np.float32, 1e-5), (np.float16, 1e-2)):
        blended = blend(height, width, tile_size, overlap, tile_logits, dtype)
        np.testing.assert_allclose(blended, expected, rtol=tolerance, atol=tolerance)


def test_blending_leaves_no_seams():
    """Tiles that all see the same smooth logit field blend back into exactly that field: no seams, any grid."""
    height, width = 1000, 1700
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    field = np.stack([np.sin(rows / 97) + cols / 500, np.cos(cols / 131) - rows / 700])  # (2, H, W)
    seen = np.zeros((height, width), np.int32)

    def tile_logits(top: int, left: int, bottom: int, right: int) -> np.ndarray:
        seen[top:bottom, left:right] += 1
        return field[:, top:bottom, left:right].copy()

    for dtype, tolerance in ((np.float32, 1e-5), (np.float16, 4e-3)):
        np.testing.assert_allclose(blend(height, width, 512, 128, tile_logits, dtype), field, rtol=tolerance, atol=tolerance)
    assert seen.min() >= 2 and seen.max() >= 8  # every pixel covered (twice: two runs), overlaps blended


def test_blending_memory_grows_by_at_most_a_float16_band():
    """What grows with the image's width stays within a float16 band of the rows that the tile rows of a
    5400-high image share (at most 256: rows 0, 512, ..., 4096, 4640); the tiles and their temporaries,
    the same at any width, cancel out; the summed windows and the tiles' ramps add a few float32 per column."""
    classes, tile_size = 2, 768
    tile = np.ones((classes, tile_size, tile_size), np.float32)

    def tile_logits(top: int, left: int, bottom: int, right: int) -> np.ndarray:
        return tile[:, : bottom - top, : right - left].copy()

    def peak_memory(width: int) -> int:
        tracemalloc.start()
        try:
            for _ in blended_blocks(5400, width, tile_size, 192, tile_logits):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    narrow, wide = 768 + 5 * 576, 768 + 11 * 576  # grids of whole tiles, 576 apart in both
    band = classes * 256 * (wide - narrow) * 2
    assert band <= peak_memory(wide) - peak_memory(narrow) <= band + 4 * 4 * (wide - narrow)  # + a few float32 per column


def test_argmax_classes_is_np_argmax():
    """Ties (plenty among small integers) go to the lowest class, as with np.argmax."""
    logits = np.random.default_rng(0).integers(0, 4, (11, 70, 90)).astype(np.float32)
    np.testing.assert_array_equal(argmax_classes(logits), logits.argmax(axis=0))
    np.testing.assert_array_equal(argmax_classes(logits[:, 5:60, 7:80]), logits[:, 5:60, 7:80].argmax(axis=0))


def test_small_images_are_unchanged(model, camvid_mini):
    """Under the threshold nothing changes: the same mask and confidence as the whole-image path."""
    image = Image.open(sorted((camvid_mini / "test").iterdir())[0])
    mask, confidence = predict(model, image, confidence=True)
    whole_mask, whole_confidence = predict(model, image, confidence=True, tile_above=WHOLE)
    np.testing.assert_array_equal(mask, whole_mask)
    np.testing.assert_array_equal(confidence, whole_confidence)


def test_2048_tiled_agrees_with_whole_image(model, camvid_mini):
    image = camvid_mosaic(camvid_mini)
    whole = predict_mask(model, image, tile_above=WHOLE)
    # the defaults (896 tiles, >= 128 overlap, spread evenly: 0, 576, 1152, each seam 320 wide): 99.7%
    tiled, confidence = predict(model, image, confidence=True, tile_above=0)
    assert tiled.shape == (2048, 2048) and confidence.shape == (2048, 2048)
    assert (tiled == whole).mean() >= 0.995
    assert 0 < confidence.min() and confidence.max() <= 1 + 1e-6 and confidence.mean() > 0.5
    # larger tiles and overlap: 99.9%
    assert (predict_mask(model, image, tile_size=1024, tile_overlap=320, tile_above=0) == whole).mean() >= 0.998


@pytest.mark.parametrize("form", ["onnxruntime", "openvino"])
def test_graph_engines_tile_too(form, model, camvid_mini):
    """OpenVINO compiles each tile shape once (a 1024 mosaic in 512/128 tiles has four) and gives PyTorch's masks."""
    from segsvc.io.modelfolder import DEFAULT_MODEL_DIR
    from segsvc.runtime import load_runtime

    image = camvid_mosaic(camvid_mini, 1024)
    backend = load_runtime(DEFAULT_MODEL_DIR, form, threads=1)
    agreement = (predict_mask(backend, image, tile_size=512, tile_overlap=128, tile_above=0) == predict_mask(model, image, tile_size=512, tile_overlap=128, tile_above=0)).mean()
    assert agreement >= 0.999


class CountingBackend:
    """Logits of zeros for any batch, and how much memory-release it was asked for."""

    def __init__(self) -> None:
        self.released = 0

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((batch.shape[0], 11, *batch.shape[2:]), np.float32)

    def release_memory(self) -> None:
        self.released += 1


def test_checkpoint_runs_before_each_tile_and_can_stop_the_image():
    """The service stops a large image whose client has gone at its next tile, and releases its memory."""
    rgb, backend, calls = np.zeros((2000, 2400, 3), np.uint8), CountingBackend(), []
    predict(backend, rgb, before_tile=lambda: calls.append(1), tile_above=0)
    assert len(calls) == len(tile_starts(2000, 896, 128)) * len(tile_starts(2400, 896, 128)) and backend.released == 1

    def stop_at_the_third() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise TimeoutError("client gone")

    calls.clear()
    with pytest.raises(TimeoutError):
        predict(backend, rgb, before_tile=stop_at_the_third, tile_above=0)
    assert len(calls) == 3 and backend.released == 2
    predict(backend, np.zeros((360, 480, 3), np.uint8), before_tile=stop_at_the_third)  # untiled: never called
