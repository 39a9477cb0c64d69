"""Drawn shapes -> class ids (H, W): the rasteriser the polygon formats share (YOLO-seg, LabelMe).

A shape is a polygon, rectangle, circle, or a line drawn `width` pixels wide, in pixel coordinates where
pixel (x, y) covers [x, x + 1) x [y, y + 1) and a vertex lands on the pixel it falls in. Overlaps follow
COCO's rule (`segsvc.data.masks.rasterize_coco`): shapes are painted largest first, so the smaller one wins
(a car on a road keeps its pixels); equal areas, the later shape wins. Pixels no shape covers get the
background class, or the ignore index when there is none.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segsvc.data.masks import MaskError

SHAPE_KINDS = ("polygon", "rectangle", "circle", "line")


@dataclass(frozen=True)
class Shape:
    """One drawn shape: its class id, kind, points (N, 2) as x, y in pixels, and a line's width in pixels."""

    class_id: int
    kind: str
    points: tuple
    width: int = 1


def paint_shapes(height: int, width: int, shapes: list[Shape], background: int) -> np.ndarray:
    """Class ids (H, W), int32: `background` first, then the shapes largest first (smaller wins)."""
    ids = np.full((height, width), background, dtype=np.int32)
    drawn = []
    for order, shape in enumerate(shapes):
        box, pixels = draw(shape, height, width)
        if pixels is not None:
            drawn.append((-int(pixels.sum()), order, shape.class_id, box, pixels))
    for _, _, class_id, (top, left), pixels in sorted(drawn, key=lambda item: item[:2]):
        ids[top : top + pixels.shape[0], left : left + pixels.shape[1]][pixels] = class_id
    return ids


def draw(shape: Shape, height: int, width: int) -> tuple[tuple[int, int], np.ndarray | None]:
    """((top, left), the shape's pixels inside its clipped bounding box), or None when it lies outside the image."""
    points = np.floor(np.asarray(shape.points, dtype=np.float64)).astype(np.int64)
    radius = 0
    if shape.kind == "circle":  # centre and a point on the circle
        radius = int(round(float(np.hypot(*(np.asarray(shape.points[1], float) - np.asarray(shape.points[0], float))))))
        points = points[:1]
    elif shape.kind == "line":
        radius = (shape.width + 1) // 2
    left, top = np.maximum(points.min(0) - radius, 0)
    right, bottom = np.minimum(points.max(0) + radius, (width - 1, height - 1))
    if right < left or bottom < top:
        return (0, 0), None
    canvas = np.zeros((bottom - top + 1, right - left + 1), np.uint8)
    local = (points - (left, top)).astype(np.int32)
    if shape.kind == "polygon":
        cv2.fillPoly(canvas, [local], 1)
    elif shape.kind == "rectangle":
        cv2.rectangle(canvas, tuple(map(int, local.min(0))), tuple(map(int, local.max(0))), 1, thickness=-1)
    elif shape.kind == "circle":
        cv2.circle(canvas, tuple(map(int, local[0])), radius, 1, thickness=-1)
    elif len(local) == 1:  # a point drawn as a line: a disc of the line's width
        cv2.circle(canvas, tuple(map(int, local[0])), max(shape.width // 2, 0), 1, thickness=-1)
    else:
        cv2.polylines(canvas, [local], False, 1, thickness=shape.width)
    return (int(top), int(left)), canvas.astype(bool)


def image_size(source: Path | bytes) -> tuple[int, int]:
    """(height, width) as the image is shown, EXIF orientation applied, from its header (no decoding)."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            width, height = image.size
            turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # the orientations that swap the sides
    except (OSError, SyntaxError, ValueError) as error:
        raise MaskError(f"unreadable image {source if isinstance(source, Path) else '(embedded)'}: {error}") from error
    return (width, height) if turned else (height, width)
