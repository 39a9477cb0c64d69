"""Look at a dataset folder and say how to read it: what `segsvc data init` writes as the YAML's data part.

The exports of labelling tools are recognised by their files (YOLO's label .txt files and data.yaml,
LabelMe's JSON with `shapes`, COCO's JSON with `images`/`annotations`/`categories`); folders of images and
masks by their layout (`segsvc.data.survey_masks`). Each finding comes with why it was concluded. Where two
readings fit, the likelier is written and the other is named (`Reading.others`): it never guesses silently.
"""

from __future__ import annotations

import json
from pathlib import Path

from segsvc.data import yolo
from segsvc.data.labelme import STROKED, find_image, is_labelme, read_json
from segsvc.data.layout import SPLIT_FOLDERS, DataError, find_split_folder
from segsvc.data.masks import MaskError
from segsvc.data.reading import Reading
from segsvc.data.survey_masks import survey_pairs

SPLITS = ("train", "val", "test")
# LabelMe lines, linestrips and points have no area; they are drawn this wide unless the YAML says otherwise.
LINE_WIDTH = 5


def survey(root: Path) -> Reading:
    """The likeliest reading of `root`; a DataError when nothing in it reads as a segmentation dataset."""
    if not root.is_dir():
        raise DataError(f"not a folder: {root}")
    for look in (survey_yolo, survey_labelme, survey_coco):
        reading = look(root)
        if reading is not None:
            return reading
    return survey_pairs(root)


def survey_yolo(root: Path) -> Reading | None:
    splits = yolo.find_splits(root)
    labels = [path for _, folder in splits.values() if folder.is_dir() for path in sorted(folder.glob("*.txt"))]
    if not labels:
        return None
    if "train" not in splits:
        raise DataError(f"{root} holds YOLO labels but no train images (images/train/ or train/images/)")
    images = splits["train"][0]
    if images == root / "images":
        layout = "one images/ + labels/ pair"
    elif images.parent == root / "images":
        layout = "Ultralytics' images/<split> + labels/<split>"
    else:
        layout = "Roboflow's {train,valid,test}/{images,labels}"
    reading = Reading({"mask_format": "yolo"}, [f"YOLO label files ({len(labels)} .txt) in {layout}"])
    counts = [len(line.split()) for path in labels[:50] for line in path.read_text().splitlines() if line.strip()]
    if counts and all(count == 5 for count in counts):
        raise DataError(f"{root} holds YOLO detection labels (class x y w h, e.g. {labels[0]}): boxes, not polygons; export for segmentation")
    data_yaml = yolo.find_data_yaml(root)
    if data_yaml is not None:
        try:
            names, notes = yolo.read_data_yaml(data_yaml)
        except MaskError as error:
            raise DataError(str(error)) from error
        reading.init_args["class_names"] = ["background", *names]
        reading.found += [f"class names from {data_yaml.name} ({len(names)}), with background added as class 0", *notes]
    else:
        top = max((int(line.split()[0]) for path in labels for line in path.read_text().splitlines() if line.strip()), default=0)
        reading.init_args["class_names"] = ["background", *(f"class_{k}" for k in range(top + 1))]
        reading.found.append(f"no data.yaml: classes 0..{top} seen in the labels, named class_K (rename them)")
    reading.found += yolo.stale_caches([labels for _, labels in splits.values()])
    reading.add_split("val" in splits, "valid/ is the val split" if (root / "valid").is_dir() else "")
    return reading


def find_labelme(folder: Path) -> tuple[str | None, list[Path]]:
    """(subfolder holding the LabelMe JSONs or None for `folder` itself, those JSONs)."""
    for sub in [None, *sorted(p.name for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []:
        where = folder / sub if sub else folder
        files = [path for path in sorted(where.glob("*.json")) if is_labelme(path)]
        if files:
            return sub, files
    return None, []


def survey_labelme(root: Path) -> Reading | None:
    split_folders = {split: folder for split in SPLITS if (folder := find_split_folder(root, split)) and find_labelme(folder)[1]}
    folders = split_folders or {"train": root}
    sub, files = find_labelme(folders["train"])
    if not files or (not split_folders and sub in {name for names in SPLIT_FOLDERS.values() for name in names}):
        return None
    files = [path for folder in folders.values() for path in find_labelme(folder)[1]]
    reading = Reading({"mask_format": "labelme"}, [f"LabelMe JSON files ({len(files)}) in {'/'.join(['<split>'] * bool(split_folders) + [sub] * bool(sub)) or 'the folder'}"])
    labels, kinds, versions, embedded, image_dirs = set(), set(), set(), 0, set()
    for path in files:
        content = read_json(path)
        labels |= {str(shape.get("label")) for shape in content["shapes"]}
        kinds |= {shape.get("shape_type") or "polygon" for shape in content["shapes"]}
        versions.add(str(content.get("version", "?")))
        where = labelme_image(path, content, path.parent if not sub else path.parent.parent)
        embedded += where == ""
        image_dirs |= {where} if where not in ("", ".") else set()
    names = sorted(labels - {"background"})
    reading.init_args["class_names"] = ["background", *names]
    reading.found.append(f"LabelMe {', '.join(sorted(versions))}; labels {', '.join(names)} as classes after background (unlabelled pixels)")
    if sub:
        reading.init_args["mask_dir"] = sub
    if image_dirs:
        reading.init_args["image_dir"] = sorted(image_dirs)[0]
        reading.found.append(f"imagePath does not resolve beside the JSON: images found by name in {sorted(image_dirs)[0]}/")
    if embedded:
        reading.found.append(f"{embedded} image(s) read from the JSON's embedded imageData")
    strokes = sorted(kinds & set(STROKED))
    if strokes:
        reading.init_args["line_width"] = LINE_WIDTH
        reading.others.append(f"{', '.join(strokes)} shapes have no area: drawn {LINE_WIDTH} px wide (line_width); delete them or set your width")
    reading.add_split("val" in folders)
    return reading


def labelme_image(path: Path, content: dict, folder: Path) -> str:
    """Where a LabelMe file's image is: "." through imagePath, a folder's name in `folder`, "" embedded only."""
    def resolves(image_dir: Path) -> bool:
        try:
            return find_image(path, content, image_dir) != path
        except MaskError:  # no image anywhere: the data check says so, naming the file
            return False

    if resolves(folder / "\0"):  # through imagePath (no folder has that name)
        return "."
    return next((p.name for p in sorted(folder.iterdir()) if p.is_dir() and resolves(p)), "")


def is_coco(path: Path) -> bool:
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(content, dict) and {"images", "annotations", "categories"} <= set(content)


def survey_coco(root: Path) -> Reading | None:
    folders = {split: folder for split in SPLITS if (folder := find_split_folder(root, split))} or {"train": root}
    files = {split: [p for p in sorted(folder.glob("*.json")) if is_coco(p)] for split, folder in folders.items()}
    if not files.get("train"):
        return None
    name = files["train"][0].name
    reading = Reading({"mask_format": "coco", "annotations": name}, [f"COCO JSON ({name}) in {'<split>/' if len(folders) > 1 else 'the folder'}"])
    used, categories = set(), {}
    for split_files in files.values():
        for path in split_files[:1]:
            content = json.loads(path.read_text())
            categories |= {c["id"]: c["name"] for c in content["categories"]}
            used |= {a["category_id"] for a in content["annotations"]}
    names = [categories[i] for i in sorted(categories) if i in used and categories[i] != "background"]
    reading.init_args["class_names"] = ["background", *names]
    unused = sorted(categories[i] for i in categories if i not in used)
    reading.found.append(f"categories {', '.join(names)} as classes after background (unannotated pixels)")
    if unused:
        reading.found.append(f"categories without annotations left out: {', '.join(unused)}")
    reading.others.append("unannotated pixels as background (written); or ignored: background_class: null")
    reading.add_split(bool(files.get("val")))
    return reading
