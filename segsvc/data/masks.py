"""Mask files -> class ids (H, W), in every common annotation format.

- "index":  single-channel PNGs whose pixels are class ids (CamVid's SegNet layout, VOC's P-mode PNGs).
- "values": pixel values mapped to classes in order, `values=(0, 255)` for the usual binary masks. An entry
  may also be a list of values or an inclusive range string: `(0, "1-255")` makes instance-id masks
  (0 background, 1..N one id per object) a two-class mask.
- "color":  RGB masks mapped to classes by a palette (CamVid's colour labels, Cityscapes-style exports).
- "coco":   COCO segmentation JSON (polygons, RLE), rasterised with pycocotools.
- "yolo", "labelme": polygon labels, read by `segsvc.data.yolo` and `segsvc.data.labelme`.

All of them decode to the same thing: class ids with `ignore_index` where nothing counts. A value, colour
or category the configuration does not name is an error naming the file and how many pixels hold it,
never a silent ignore.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MASK_FORMATS = ("index", "values", "color", "coco", "yolo", "labelme")


class MaskError(ValueError):
    """A mask that does not decode under the configured format; the message names the file."""


@dataclass(frozen=True)
class MaskFormat:
    """How masks encode classes. `values`: the pixel value ("values") or RGB colour ("color") of each class."""

    kind: str
    num_classes: int
    ignore_index: int
    values: tuple = ()
    ignore_values: tuple = ()  # pixel values or colours that mean "ignore this pixel"

    def __post_init__(self) -> None:
        if self.kind not in MASK_FORMATS:
            raise MaskError(f"mask_format {self.kind!r} is not one of {', '.join(MASK_FORMATS)}")
        if 0 <= self.ignore_index < self.num_classes:
            raise MaskError(f"ignore_index {self.ignore_index} is a class id (0..{self.num_classes - 1}); pick one outside")
        if self.kind in ("values", "color") and len(self.values) != self.num_classes:
            name = "mask_values" if self.kind == "values" else "palette"
            raise MaskError(f"{name} has {len(self.values)} entries for {self.num_classes} classes; give one per class")
        if self.kind == "values":
            spans = sorted(self.value_ranges())
            for (low, high, _), (next_low, _, _) in zip(spans, spans[1:]):
                if next_low <= high:
                    raise MaskError(f"value {next_low} appears twice in mask_values and ignore_values: "
                                    f"{list(self.values)}, {list(self.ignore_values)}")  # fmt: skip
            return
        known = list(self.values) + list(self.ignore_values)
        if len(set(known)) != len(known):
            raise MaskError(f"a value appears twice in mask_values/palette and ignore_values: {known}")

    def value_ranges(self) -> list[tuple[int, int, int]]:
        """(low, high, class id) inclusive, for "values" masks; ignore_values map to the ignore index."""
        entries = [*enumerate(self.values), *((self.ignore_index, v) for v in self.ignore_values)]
        return [(low, high, class_id) for class_id, entry in entries for low, high in parse_values(entry)]

    def describe(self, class_id: int) -> str:
        """How a decoded id looks in the mask files, for reports."""
        if class_id == self.ignore_index:
            return f"{class_id}=ignore" if self.kind == "index" else "ignore"
        if self.kind == "values":
            return format_values(self.values[class_id])
        if self.kind == "color":
            return "#%02x%02x%02x" % tuple(self.values[class_id])
        return str(class_id)


def parse_values(entry: int | str | list | tuple) -> list[tuple[int, int]]:
    """One class's `mask_values` entry -> inclusive (low, high) ranges: 7, "7", "1-255", or a list of those."""
    if isinstance(entry, (list, tuple)):
        return [span for item in entry for span in parse_values(item)]
    if isinstance(entry, (int, np.integer)) and not isinstance(entry, bool):
        return [(int(entry), int(entry))]
    text = str(entry).strip()
    low, dash, high = text.partition("-")
    try:
        span = (int(low), int(high) if dash else int(low))
    except ValueError:
        raise MaskError(f"mask_values entry {entry!r} is not a value, a list of values or a range like \"1-255\"") from None
    if span[0] < 0 or span[1] < span[0]:
        raise MaskError(f"mask_values range {entry!r} is empty or negative; write it low-high, e.g. \"1-255\"")
    return [span]


def format_values(entry: int | str | list | tuple) -> str:
    spans = [f"{low}" if low == high else f"{low}-{high}" for low, high in parse_values(entry)]
    return spans[0] if len(spans) == 1 else "[" + ", ".join(spans) + "]"


def decode_mask(source, mask_format: MaskFormat) -> np.ndarray:
    """A mask file, or an image's annotations (COCO, YOLO, LabelMe: any `rasterize`) -> class ids (H, W), uint8
    (int32 past 255)."""
    if hasattr(source, "rasterize"):
        ids = source.rasterize(mask_format.ignore_index)
    else:
        pixels = read_mask_pixels(source, rgb=mask_format.kind == "color")
        if mask_format.kind == "index":
            ids = index_classes(pixels, source, mask_format)
        else:
            ids = lookup_classes(pixels, source, mask_format)
    return ids.astype(np.uint8 if max(mask_format.num_classes, mask_format.ignore_index) < 256 else np.int32)


def read_mask_pixels(path: Path, rgb: bool) -> np.ndarray:
    """Raw mask pixels, EXIF orientation applied: (H, W) values, or (H, W, 3) colours when `rgb`."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if rgb:
                return np.asarray(image.convert("RGB"))
            if image.mode == "1":
                image = image.convert("L")  # 1-bit masks read as 0/255, as a viewer shows them
            if image.mode in ("LA", "PA"):
                image = image.getchannel(0)
            pixels = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise MaskError(f"unreadable mask {path}: {error}") from error
    if pixels.ndim == 3:  # grey saved as RGB(A) is common; real colour needs mask_format: color
        if (pixels[..., :3] == pixels[..., :1]).all():
            return pixels[..., 0]
        raise MaskError(f"mask {path} is a colour image; for colour masks set mask_format: color and a palette")
    return pixels


def index_classes(pixels: np.ndarray, path: Path, mask_format: MaskFormat) -> np.ndarray:
    ids = pixels.astype(np.int64)
    bad = ((ids >= mask_format.num_classes) & (ids != mask_format.ignore_index)) | (ids < 0)
    if bad.any():
        values, counts = np.unique(ids[bad], return_counts=True)
        raise MaskError(
            f"mask {path} has values {values[:5].tolist()} outside the classes 0..{mask_format.num_classes - 1} "
            f"(ignore index {mask_format.ignore_index}; {describe_counts(values, counts)})"
            + instance_hint(np.unique(ids), mask_format.num_classes)
        )
    return ids


def instance_hint(seen: np.ndarray, num_classes: int) -> str:
    """A pointer to value ranges when the values seen run 0, 1, ..., N past the classes: instance ids."""
    seen = np.asarray(seen).tolist()
    if len(seen) < 3 or seen != list(range(len(seen))) or seen[-1] < num_classes:
        return ""
    top = 255 if seen[-1] <= 255 else 65535
    return (
        f"; the values run 0, 1..{seen[-1]} like instance ids (one per object): if every non-zero value is one "
        f'class, say so with `mask_values: [0, "1-{top}"]`'
    )


def lookup_classes(pixels: np.ndarray, path: Path, mask_format: MaskFormat) -> np.ndarray:
    """Map each pixel value (or colour) through the format's table; an unknown one is an error."""
    colour = pixels.ndim == 3
    codes = pack_rgb(pixels) if colour else pixels.astype(np.int64)
    unique, inverse, counts = np.unique(codes.ravel(), return_inverse=True, return_counts=True)
    if colour:
        table = {int(pack_rgb(np.asarray(value))): class_id for class_id, value in enumerate(mask_format.values)}
        table.update({int(pack_rgb(np.asarray(value))): mask_format.ignore_index for value in mask_format.ignore_values})
        unknown = np.array([code not in table for code in unique.tolist()], dtype=bool)
        mapped = np.array([table.get(code, -1) for code in unique.tolist()], dtype=np.int64)
    else:
        mapped, unknown = lookup_ranges(unique, mask_format.value_ranges())
    if unknown.any():
        shown = [unpack_rgb(code) for code in unique[unknown]] if colour else unique[unknown].tolist()
        order = np.argsort(-counts[unknown])[:3]
        found = ", ".join(f"{'colour' if colour else 'value'} {shown[i]} in {counts[unknown][i]} pixels" for i in order)
        names = ("palette", "a colour to ignore_values") if colour else ("mask_values", "ignore_values")
        hint = "" if colour else instance_hint(unique, mask_format.num_classes)
        raise MaskError(f"mask {path} has {found}, not in {names[0]} (add it there, or {names[1]}){hint}")
    return mapped[inverse].reshape(codes.shape)


def lookup_ranges(codes: np.ndarray, ranges: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(class id per code, codes in no range) for sorted unique codes and non-overlapping (low, high, id) ranges."""
    ranges = sorted(ranges)
    lows = np.array([r[0] for r in ranges], dtype=np.int64)
    highs = np.array([r[1] for r in ranges], dtype=np.int64)
    ids = np.array([r[2] for r in ranges], dtype=np.int64)
    where = np.searchsorted(lows, codes, side="right") - 1  # the last range starting at or below each code
    inside = (where >= 0) & (codes <= highs[where.clip(0)])
    return np.where(inside, ids[where.clip(0)], -1), ~inside


def pack_rgb(pixels: np.ndarray) -> np.ndarray:
    pixels = pixels.astype(np.int64)
    return (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]


def unpack_rgb(code: int) -> tuple[int, int, int]:
    return (int(code) >> 16 & 255, int(code) >> 8 & 255, int(code) & 255)


def describe_counts(values: np.ndarray, counts: np.ndarray) -> str:
    return ", ".join(f"{v}: {c} pixels" for v, c in zip(values[:5].tolist(), counts[:5].tolist()))


# --- COCO -------------------------------------------------------------------------------------------
# Overlaps: instances are painted largest first, so where two overlap the smaller one wins (a person in
# front of a wall keeps its pixels); equal areas: the later annotation id wins. Pixels no annotation
# covers become the background class, or the ignore index when there is none.


@dataclass(frozen=True)
class CocoImage:
    """One image of a COCO file: its size and its annotations as (id, class id, segmentation)."""

    json_path: Path
    image_id: int
    file_name: str
    height: int
    width: int
    annotations: tuple
    background: int

    def __str__(self) -> str:  # how errors name it
        return f"{self.json_path} (image id {self.image_id}, {self.file_name})"

    @property
    def path(self) -> Path:  # the file whose size and time key the data check's cache
        return self.json_path

    def rasterize(self, ignore_index: int) -> np.ndarray:
        return rasterize_coco(self, ignore_index)


def read_coco(
    json_path: Path, image_dir: Path, class_names: list[str], background: str | None, ignore_index: int
) -> list[tuple[Path, CocoImage]]:
    """(image file, CocoImage) for every image the file lists; categories map to classes by name."""
    try:
        coco = json.loads(Path(json_path).read_text())
        images, annotations, categories = coco["images"], coco["annotations"], coco["categories"]
    except FileNotFoundError as error:
        raise MaskError(f"COCO file not found: {json_path}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MaskError(f"corrupt COCO file {json_path}: {error}") from error
    except (KeyError, TypeError) as error:
        raise MaskError(f"COCO file {json_path} lacks {error} (needs images, annotations, categories)") from error
    if background is not None and background not in class_names:
        raise MaskError(f"background_class {background!r} is not in class_names {class_names}; add it, or set it to null")
    # A category no annotation uses need not be a class (Roboflow lists its project as an unused category 0).
    category_class = {c["id"]: class_names.index(c["name"]) for c in categories if c["name"] in class_names}
    unknown = {c["id"]: c["name"] for c in categories if c["name"] not in class_names}
    sizes = {image["id"]: (image["height"], image["width"]) for image in images}
    by_image: dict[int, list] = {image_id: [] for image_id in sizes}
    for annotation in annotations:
        annotation_id, image_id = annotation.get("id"), annotation.get("image_id")
        if annotation.get("category_id") in unknown:
            category_id = annotation["category_id"]
            raise MaskError(f"COCO category {unknown[category_id]!r} (id {category_id}) in {json_path} is not in class_names {class_names}")
        if annotation.get("category_id") not in category_class:
            raise MaskError(
                f"annotation {annotation_id} in {json_path} has category_id {annotation.get('category_id')}, "
                "which is not among the file's categories"
            )
        if image_id not in sizes:
            raise MaskError(f"annotation {annotation_id} in {json_path} names image_id {image_id}, which the file does not list")
        segmentation = check_segmentation(annotation, *sizes[image_id], json_path)
        by_image[image_id].append((annotation_id, category_class[annotation["category_id"]], segmentation))
    default = class_names.index(background) if background is not None else ignore_index
    pairs = []
    for image in sorted(images, key=lambda image: image["file_name"]):
        path = Path(image_dir) / image["file_name"]
        if not path.is_file():
            raise MaskError(f"{json_path} names image {image['file_name']} (id {image['id']}), not found in {image_dir}")
        pairs.append(
            (path, CocoImage(Path(json_path), image["id"], image["file_name"], image["height"], image["width"],
                             tuple(by_image[image["id"]]), default))
        )  # fmt: skip
    return pairs


def check_segmentation(annotation: dict, height: int, width: int, json_path: Path):
    """The annotation's polygons or RLE, checked against its image's size."""
    annotation_id, segmentation = annotation.get("id"), annotation.get("segmentation")
    where = f"annotation {annotation_id} in {json_path}"
    if isinstance(segmentation, dict):
        if list(segmentation.get("size", [])) != [height, width]:
            raise MaskError(f"{where}: RLE size {segmentation.get('size')} differs from its image's {[height, width]}")
        return segmentation
    if not isinstance(segmentation, list) or not segmentation:
        raise MaskError(f"{where} has no polygons or RLE in 'segmentation'")
    for polygon in segmentation:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise MaskError(f"{where}: a polygon needs at least 3 (x, y) points, got {polygon!r:.60}")
        xs, ys = np.asarray(polygon[0::2], float), np.asarray(polygon[1::2], float)
        outside = (xs < -1) | (xs > width + 1) | (ys < -1) | (ys > height + 1)  # 1 pixel of rounding slack
        if outside.any():
            i = int(np.argmax(outside))
            raise MaskError(f"{where}: polygon point ({xs[i]:g}, {ys[i]:g}) lies outside its {width}x{height} image")
    return segmentation


def rasterize_coco(image: CocoImage, ignore_index: int) -> np.ndarray:
    """Class ids (H, W) for one COCO image: background first, then instances largest first (smaller wins)."""
    from pycocotools import mask as coco_mask

    ids = np.full((image.height, image.width), image.background, dtype=np.int64)
    shapes = []
    for annotation_id, class_id, segmentation in image.annotations:
        if isinstance(segmentation, list):
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, image.height, image.width))
        elif isinstance(segmentation["counts"], list):  # uncompressed RLE, as iscrowd exports write it
            rle = coco_mask.frPyObjects(segmentation, image.height, image.width)
        else:
            rle = segmentation
        shapes.append((-float(coco_mask.area(rle)), annotation_id or 0, class_id, rle))
    for _, _, class_id, rle in sorted(shapes, key=lambda shape: shape[:2]):
        ids[coco_mask.decode(rle).astype(bool)] = class_id
    return ids
