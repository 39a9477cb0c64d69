"""LabelMe JSON (3.x and 5.x) -> class ids.

One JSON per image: `shapes`, each with a `label`, `points` in pixels and a `shape_type` (3.x files may lack
it: a polygon). The image is found, in this order, through `imagePath` relative to the JSON (Windows `\\`
or `/`), by the JSON's or imagePath's stem in `image_dir`, or decoded from the embedded base64 `imageData`
(the JSON then stands for the image: `read_embedded_image`). Shapes become classes by label; pixels no shape
covers are the background class. Polygons, rectangles and circles fill; a line, linestrip or point is drawn
`line_width` pixels wide, and without a `line_width` it is refused, as is any other shape type.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np

from segsvc.data.layout import pairing_name
from segsvc.data.masks import MaskError
from segsvc.data.shapes import Shape, image_size, paint_shapes

FILLED = {"polygon": "polygon", "ai_polygon": "polygon", "rectangle": "rectangle", "circle": "circle"}
STROKED = ("line", "linestrip", "point")
MIN_POINTS = {"polygon": 3, "rectangle": 2, "circle": 2, "line": 1}


@dataclass(frozen=True)
class LabelmeShapes:
    """One LabelMe file's shapes in class ids, and the size they are drawn at."""

    json_path: Path
    height: int
    width: int
    shapes: tuple
    background: int

    @property
    def path(self) -> Path:  # the file whose size and time key the data check's cache
        return self.json_path

    def __str__(self) -> str:
        return str(self.json_path)

    def rasterize(self, ignore_index: int) -> np.ndarray:
        return paint_shapes(self.height, self.width, list(self.shapes), self.background)


def read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MaskError(f"corrupt LabelMe file {path}: {error}") from error
    if not isinstance(content, dict) or not isinstance(content.get("shapes"), list):
        raise MaskError(f"{path} is not a LabelMe file: it has no `shapes` list")
    return content


def read_embedded_image(path: Path) -> bytes:
    """The image a LabelMe file carries in `imageData` (base64)."""
    try:
        return base64.b64decode(read_json(path).get("imageData") or "", validate=True)
    except (binascii.Error, ValueError) as error:
        raise MaskError(f"{path}: imageData is not base64: {error}") from error


def find_image(json_path: Path, content: dict, image_dir: Path) -> Path:
    """The image file the JSON labels, or the JSON itself when only its `imageData` holds the image."""
    named = str(content.get("imagePath") or "")
    relative = Path(PureWindowsPath(named).as_posix()) if named else None
    if relative is not None and (json_path.parent / relative).is_file():
        return json_path.parent / relative
    stems = {json_path.stem} | ({relative.stem} if relative is not None else set())
    if image_dir.is_dir():
        for candidate in sorted(image_dir.iterdir()):
            if pairing_name(candidate, None) in stems:
                return candidate
    if content.get("imageData"):
        return json_path
    raise MaskError(f"{json_path}: image {named!r} is not beside it, no image named {json_path.stem} is in {image_dir}, and no imageData is embedded")


def read_shapes(path: Path, content: dict, class_names: list[str], line_width: int | None) -> list[Shape]:
    shapes = []
    for index, shape in enumerate(content["shapes"]):
        label, kind = shape.get("label"), shape.get("shape_type") or "polygon"
        where = f"{path}: shape {index} ({label!r}, {kind})"
        if label not in class_names:
            raise MaskError(f"{where}: label {label!r} is not in class_names {class_names}")
        if kind in STROKED:
            if line_width is None:
                raise MaskError(f"{where}: a {kind} has no area; set `line_width` (pixels) to draw it, or delete the shape")
            kind, width = "line", line_width
        elif kind in FILLED:
            kind, width = FILLED[kind], 1
        else:
            raise MaskError(f"{where}: shape type {kind!r} is not one of polygon, rectangle, circle, line, linestrip, point")
        points = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
        if len(points) < MIN_POINTS[kind]:
            raise MaskError(f"{where}: needs at least {MIN_POINTS[kind]} points, got {len(points)}")
        shapes.append(Shape(class_names.index(label), kind, tuple(map(tuple, points)), width))
    return shapes


def list_labelme_pairs(
    json_dir: Path, image_dir: Path, class_names: list[str], background: int, line_width: int | None
) -> list[tuple[Path, LabelmeShapes]]:
    """(image, its shapes) for each LabelMe JSON in `json_dir`; the image is the JSON when it is embedded."""
    pairs = []
    for path in sorted(json_dir.glob("*.json")):
        content = read_json(path)
        image = find_image(path, content, image_dir)
        if content.get("imageHeight") and content.get("imageWidth"):
            height, width = int(content["imageHeight"]), int(content["imageWidth"])
        else:  # LabelMe 3.x files before imageHeight: the image's own size
            height, width = image_size(read_embedded_image(path) if image == path else image)
        shapes = read_shapes(path, content, class_names, line_width)
        pairs.append((image, LabelmeShapes(path, height, width, tuple(shapes), background)))
    return pairs


def is_labelme(path: Path) -> bool:
    """Whether a JSON file looks like LabelMe's (a `shapes` list), reading only its start when it is large."""
    try:
        with path.open("rb") as file:
            head = file.read(4096)
    except OSError:
        return False
    return b'"shapes"' in head or (b'"imageData"' not in head and b'"shapes"' in path.read_bytes())
