"""Output encodings round-trip: RLE exactly, polygons at tolerance 0 to >= 99% IoU, confidence within 1/255."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from segsvc.io.encodings import confidence_png, polygons, rasterize, rle_decode, rle_encode


def camvid_masks(camvid_mini) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((camvid_mini / "testannot").iterdir())]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def test_rle_decodes_to_the_exact_mask(camvid_mini):
    for mask in camvid_masks(camvid_mini):
        for class_id in np.unique(mask):
            rle = rle_encode(mask, int(class_id))
            assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
            np.testing.assert_array_equal(rle_decode(rle), mask == class_id)
            # and with pycocotools alone, as docs/serving.md shows
            decoded = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            np.testing.assert_array_equal(decoded, mask == class_id)


def test_polygons_at_tolerance_zero_rasterise_back(camvid_mini):
    for mask in camvid_masks(camvid_mini):
        for class_id in np.unique(mask):
            assert iou(rasterize(polygons(mask, int(class_id), tolerance=0), mask.shape), mask == class_id) >= 0.99


def test_every_component_and_hole_is_kept():
    mask = np.zeros((40, 50), np.uint8)
    mask[5:30, 5:40] = 1
    mask[10:20, 10:20] = 0  # a hole
    mask[12:15, 12:15] = 1  # an island in the hole
    mask[22:26, 30:34] = 0  # a second hole
    mask[38, 10] = 1  # single pixels are components too
    mask[0, 49] = 1
    found = polygons(mask, 1, tolerance=0)
    assert sorted(len(polygon) for polygon in found) == [1, 1, 1, 3]  # the big one has 2 holes
    np.testing.assert_array_equal(rasterize(found, mask.shape), mask)


def test_tolerance_simplifies_and_stays_close(camvid_mini):
    mask = camvid_masks(camvid_mini)[0]
    road = 3
    exact, simple = polygons(mask, road, 0), polygons(mask, road, 2.0)
    points = lambda found: sum(len(r) for polygon in found for r in polygon)  # noqa: E731
    assert len(exact) == len(simple) and points(simple) < points(exact)
    assert iou(rasterize(simple, mask.shape), mask == road) >= 0.95
    with pytest.raises(ValueError, match="tolerance"):
        polygons(mask, road, -1)


def test_confidence_png_is_8_bit_within_one_level():
    confidence = np.random.default_rng(0).random((37, 53), dtype=np.float32)
    confidence[0, :2] = (0.0, 1.0)
    image = Image.open(io.BytesIO(confidence_png(confidence)))
    assert image.mode == "L" and image.size == (53, 37)
    levels = np.asarray(image)
    assert (levels[0, 0], levels[0, 1]) == (0, 255)
    assert np.abs(levels / 255.0 - confidence).max() <= 0.5 / 255 + 1e-6
