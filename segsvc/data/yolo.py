"""YOLO segmentation labels (Ultralytics' YOLOv8-seg, Roboflow's export) -> class ids.

One text file per image, one line per instance: `class x1 y1 x2 y2 ...`, the polygon's points normalised
by the image's width and height. Two layouts carry them (Ultralytics' dataset guide, Roboflow's export):

    root/images/{train,val,test}/X.jpg    root/labels/{train,val,test}/X.txt      (Ultralytics)
    root/{train,valid,test}/images/X.jpg  root/{train,valid,test}/labels/X.txt    (Roboflow; valid = val)

and a `data.yaml` beside them names the classes (`names:`). YOLO has no background class: segsvc adds one
as class 0 (`background_class`), so YOLO class k is segsvc class k + 1. Polygons are rasterised at each
image's size with COCO's overlap rule (`segsvc.data.shapes`). An image without a label file is all
background. Anything else that does not read as a polygon is an error naming the file and the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from segsvc.data.layout import SPLIT_FOLDERS, pairing_name
from segsvc.data.masks import MaskError
from segsvc.data.shapes import Shape, image_size, paint_shapes

DATA_YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")
# Normalised coordinates may overshoot [0, 1] by rounding in exporters; a point further out is a broken label.
COORDINATE_SLACK = 0.02


@dataclass(frozen=True)
class YoloLabels:
    """One image's label file (None: no file, all background) and how YOLO class ids map to segsvc's."""

    image: Path
    labels: Path | None
    class_ids: tuple  # YOLO class k -> segsvc class id
    background: int

    @property
    def path(self) -> Path:  # the file whose size and time key the data check's cache
        return self.labels or self.image

    def __str__(self) -> str:
        return str(self.labels or f"{self.image} (no label file)")

    def rasterize(self, ignore_index: int) -> np.ndarray:
        height, width = image_size(self.image)
        shapes = read_label_file(self.labels, self.class_ids, height, width) if self.labels else []
        return paint_shapes(height, width, shapes, self.background)


def find_data_yaml(root: Path) -> Path | None:
    for name in DATA_YAML_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def read_data_yaml(path: Path) -> tuple[list[str], list[str]]:
    """(class names, notes): `names` as a list or {id: name}; notes say which of its paths do not exist here."""
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise MaskError(f"unreadable {path}: {str(error).splitlines()[0]}") from error
    names = content.get("names") if isinstance(content, dict) else None
    if isinstance(names, dict):
        names = [names[key] for key in sorted(names)]
    if not isinstance(names, list) or not names:
        raise MaskError(f"{path} has no `names:` list of classes; set class_names in the YAML")
    base = Path(content.get("path") or path.parent)
    base = base if base.is_absolute() else path.parent / base
    missing = []
    for key in ("train", "val", "test"):
        for entry in [content.get(key)] if isinstance(content.get(key), str) else content.get(key) or []:
            if not (base / entry).exists():
                missing.append(f"{key}: {entry}")
    notes = []
    if missing:
        notes.append(f"{path} names folders that do not exist here ({', '.join(missing)}): reading the folders beside it instead")
    return [str(name) for name in names], notes


def find_splits(root: Path) -> dict[str, tuple[Path, Path]]:
    """{split: (image folder, label folder)} in either layout; empty when `root` holds neither."""
    splits = {}
    for split, folders in SPLIT_FOLDERS.items():
        for folder in folders:
            for images, labels in ((root / "images" / folder, root / "labels" / folder), (root / folder / "images", root / folder / "labels")):
                if images.is_dir() and split not in splits:
                    splits[split] = (images, labels)
    if not splits and (root / "images").is_dir() and (root / "labels").is_dir():  # one folder of each: split by val_fraction
        splits["train"] = (root / "images", root / "labels")
    return splits


def yolo_classes(roots: list[Path], class_names: list[str] | None, background: str | None) -> tuple[list[str], tuple, list[str]]:
    """(class names, segsvc class id of each YOLO class, notes to say once) for the YOLO sets in `roots`.

    The YOLO classes are data.yaml's names, in order (without a data.yaml: the YAML's class_names but the
    background); the class list is the YAML's, or the background followed by the YOLO names."""
    data_yaml = find_data_yaml(roots[0])
    names, notes = read_data_yaml(data_yaml) if data_yaml else (None, [])
    notes += stale_caches([labels for root in roots for _, labels in find_splits(root).values()])
    if names is None:
        if not class_names:
            raise MaskError(f"no data.yaml in {roots[0]} names the YOLO classes: set class_names (the background first)")
        names = [name for name in class_names if name != background]
    class_names = list(class_names or ([background] if background is not None else []) + names)
    if background is not None and background not in class_names:
        raise MaskError(f"background_class {background!r} is not in class_names {class_names}; add it, or set it to null")
    for name in names:
        if name not in class_names:
            raise MaskError(f"YOLO class {name!r} of {data_yaml} is not in class_names {class_names}")
    return class_names, tuple(class_names.index(name) for name in names), notes


def stale_caches(label_dirs: list[Path]) -> list[str]:
    """Ultralytics' `labels.cache` / `labels/train.cache` files: pickled state of another machine, never read here."""
    caches = {cache for labels in label_dirs for cache in labels.parent.glob("*.cache")}
    if not caches:
        return []
    return [f"ignoring {len(caches)} Ultralytics label cache file(s) ({sorted(caches)[0]}): the .txt labels are read instead"]


def list_yolo_pairs(images: Path, labels: Path, class_ids: tuple, background: int) -> list[tuple[Path, YoloLabels]]:
    """(image, its labels) for each image in `images`; a missing label file means an image of background only."""
    pairs = []
    for image in sorted(images.iterdir()):
        name = pairing_name(image, None)
        if name is None:
            continue
        label = labels / f"{name}.txt"
        pairs.append((image, YoloLabels(image, label if label.is_file() else None, class_ids, background)))
    return pairs


def read_label_file(path: Path, class_ids: tuple, height: int, width: int) -> list[Shape]:
    """The polygons of one label file in pixels; a line that is not `class x1 y1 x2 y2 x3 y3 ...` is an error."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise MaskError(f"unreadable label file {path}: {error}") from error
    shapes = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        where = f"{path}:{number}"
        try:
            class_id, values = int(words[0]), np.array(words[1:], dtype=np.float64)
        except ValueError:
            raise MaskError(f"{where}: not a label line (class id, then x y pairs): {line.strip()[:60]!r}") from None
        if len(values) == 4:
            raise MaskError(f"{where}: 5 values is a detection box (class x y w h), not a polygon: export for segmentation")
        if len(values) % 2:
            raise MaskError(f"{where}: an odd count of coordinates ({len(values)}): points come as x y pairs")
        if len(values) < 6:
            raise MaskError(f"{where}: a polygon needs at least 3 points, got {len(values) // 2}")
        if not 0 <= class_id < len(class_ids):
            raise MaskError(f"{where}: class {class_id} is outside the {len(class_ids)} names (0..{len(class_ids) - 1})")
        outside = (values < -COORDINATE_SLACK) | (values > 1 + COORDINATE_SLACK)
        if outside.any():
            raise MaskError(f"{where}: coordinate {values[np.argmax(outside)]:g} lies far outside [0, 1]: points are normalised by the image size")
        points = values.reshape(-1, 2).clip(0, 1) * (width, height)
        shapes.append(Shape(class_ids[class_id], "polygon", tuple(map(tuple, points.clip(0, (width - 1e-6, height - 1e-6))))))
    return shapes
