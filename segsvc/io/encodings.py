"""Output encodings of a mask for other programs: per-class COCO RLE, per-class polygons, confidence as a PNG.

- RLE is COCO's compressed run-length format (pycocotools): `{"size": [H, W], "counts": str}`, column-major,
  decoded exactly by `pycocotools.mask.decode`.
- Polygons follow GeoJSON's ring order: a polygon is a list of rings, the exterior first, then its holes; a
  ring is a list of [x, y] pixel centres (x = column, y = row). OpenCV traces them (`findContours` with
  RETR_CCOMP: every component and every hole) and simplifies each ring with Douglas-Peucker to `tolerance`
  pixels (0 keeps every corner). Rasterising all rings of a class with even-odd filling gives the class back.
- Confidence (the per-pixel maximum softmax probability, [0, 1]) becomes an 8-bit grayscale PNG: value / 255.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

Ring = list[list[int]]
Polygon = list[Ring]


def rle_encode(mask: np.ndarray, class_id: int) -> dict:
    """COCO compressed RLE of `mask == class_id`: {"size": [H, W], "counts": str} (JSON-ready)."""
    rle = coco_mask.encode(np.asfortranarray(mask == class_id, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: dict) -> np.ndarray:
    """The binary (H, W) uint8 mask of one `rle_encode` result."""
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})


def polygons(mask: np.ndarray, class_id: int, tolerance: float = 1.0) -> list[Polygon]:
    """Every connected component of `mask == class_id` as [exterior, hole, hole, ...] rings of [x, y] points."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    import cv2  # imported on first use: OpenCV adds ~35 MB to every service worker that never draws a polygon

    binary = (mask == class_id).astype(np.uint8)
    # RETR_CCOMP: a two-level hierarchy, outer boundaries on top and the holes of each as its children;
    # a component inside a hole is again a top-level contour. CHAIN_APPROX_SIMPLE drops only collinear points.
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    rings = [ring(c, tolerance) for c in contours]
    result = []
    for index, (_, _, first_child, parent) in enumerate(hierarchy[0]):
        if parent != -1:
            continue
        holes, child = [], first_child
        while child != -1:
            holes.append(rings[child])
            child = hierarchy[0][child][0]  # next sibling
        result.append([rings[index], *holes])
    return result


def ring(contour: np.ndarray, tolerance: float) -> Ring:
    import cv2

    if tolerance > 0:
        contour = cv2.approxPolyDP(contour, tolerance, closed=True)
    return contour.reshape(-1, 2).tolist()


def rasterize(polygon_list: list[Polygon], shape: tuple[int, int]) -> np.ndarray:
    """The binary (H, W) uint8 mask covered by `polygons(...)` output: all rings filled even-odd, edges included."""
    import cv2

    canvas = np.zeros(shape, dtype=np.uint8)
    rings = [np.asarray(r, dtype=np.int32) for polygon in polygon_list for r in polygon]
    if rings:
        cv2.fillPoly(canvas, rings, 1)
    return canvas


def confidence_image(confidence: np.ndarray) -> Image.Image:
    """float (H, W) in [0, 1] -> 8-bit grayscale image, round(confidence * 255)."""
    levels = np.clip(np.rint(confidence * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(levels, mode="L")


def confidence_png(confidence: np.ndarray) -> bytes:
    """float (H, W) in [0, 1] -> 8-bit grayscale PNG bytes (`confidence_image`)."""
    return png_bytes(confidence_image(confidence))


PNG_FAST = {"compress_level": 1}  # masks compress well anyway; latency matters more


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **PNG_FAST)
    return buffer.getvalue()


def fast_png(image: Image.Image) -> Image.Image:
    """`image`, saved by whoever saves it (BentoML, for an API returning a PIL image) as `png_bytes` saves it."""
    image.encoderinfo = {**getattr(image, "encoderinfo", {}), **PNG_FAST}
    return image
