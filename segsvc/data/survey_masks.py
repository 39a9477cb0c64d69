"""Folders of images and masks: which layout they are in and how their masks encode classes (`segsvc data init`).

Layouts (`segsvc.data.layout`'s options): `root/{train,val,test}/<images>/<masks>`, a flat `root/<images>` +
`root/<masks>`, VOC's JPEGImages + SegmentationClass with ImageSets/Segmentation split lists, and tile folders
of one layout each (`root: "root/Tile */"`). The image and mask folders are the pair of folders whose file
names pair best (exactly, or as X.png with X<suffix>), a folder named like masks holding the masks. Encodings
(`segsvc.data.masks`): colours (with CVAT's labelmap.txt when it is there), 0/255 binary masks, instance ids
(0, then 1..n per mask, n varying), class ids 0..K-1 (255 as VOC's void), or other values listed per class.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from segsvc.data.layout import IMAGE_SUFFIXES, DataError, find_split_folder, pairing_name
from segsvc.data.masks import pack_rgb, unpack_rgb
from segsvc.data.reading import Reading
from segsvc.data.voc import read_labelmap, read_split_list

MASK_WORDS = ("mask", "label", "annot", "seg", "gt", "truth", "class")
IMAGE_WORDS = ("image", "img", "jpeg", "photo", "rgb")
INSTANCE_WORDS = ("object", "instance")
LOSSLESS = (".png", ".bmp", ".tif", ".tiff")
MAX_COLOURS = 64  # more distinct colours than this is not a class palette (JPEG-saved or smoothed masks)
SPLITS = ("train", "val", "test")


def survey_pairs(root: Path) -> Reading:
    """The layout and encoding of a folder of images and masks; a DataError when it holds none."""
    reading = Reading({})
    splits = {split: folder for split in SPLITS if (folder := find_split_folder(root, split)) and pair_folders(folder)}
    if "train" in splits:
        sets = list(splits.values())
    elif pair_folders(root):
        sets = [root]
    else:
        tiles = sorted(p for p in root.iterdir() if p.is_dir() and pair_folders(p))
        if len(tiles) < 2:
            raise DataError(f"{root}: found no images with masks, YOLO labels, LabelMe or COCO JSON (looked in it, its split folders and subfolders)")
        prefix = os.path.commonprefix([p.name for p in tiles])
        reading.root_suffix = f"{prefix}*/"
        sets = tiles
        reading.found.append(f"{len(tiles)} folders of one layout ({tiles[0].name}, ...): read as one dataset by the glob {prefix}*/")
    image_dir, mask_dir, suffix, others = pair_folders(sets[0])
    if sets == [root] and image_dir in SPLITS and mask_dir == f"{image_dir}annot":
        return camvid_layout(root)
    reading.others += others
    for key, value, default in (("image_dir", image_dir, "images"), ("mask_dir", mask_dir, "masks"), ("mask_suffix", suffix, "")):
        if value != default:
            reading.init_args[key] = value
    reading.found.append(f"images in {image_dir}/, masks in {mask_dir}/" + (f", X.png with X{suffix}" if suffix else ""))
    lists = root / "ImageSets" / "Segmentation"
    if "train" not in splits and (lists / "train.txt").is_file() and read_split_list(lists / "train.txt"):
        reading.init_args["split_lists"] = "ImageSets/Segmentation"
        listed = [split for split in ("train", "val", "test") if (lists / f"{split}.txt").is_file() and read_split_list(lists / f"{split}.txt")]
        reading.found.append(f"split lists in ImageSets/Segmentation: {', '.join(listed)} (an empty list is no split)")
    else:
        if lists.is_dir():
            reading.found.append(f"ImageSets/Segmentation holds no train.txt ({', '.join(p.name for p in sorted(lists.glob('*.txt')))}): not split lists")
        reading.add_split("val" in splits)
    read_encoding(reading, root, [mask for folder in sets for mask in list_masks(folder / mask_dir, suffix)])
    return reading


def camvid_layout(root: Path) -> Reading:
    """SegNet's CamVid layout (train/ + trainannot/, val/, test/): CamVidDataModule reads it, with CamVid's classes."""
    seen = set()
    for split in SPLITS:
        for mask in list_masks(root / f"{split}annot", "") if (root / f"{split}annot").is_dir() else []:
            seen |= set(mask_contents(mask)[0])
    if not seen <= set(range(12)):
        raise DataError(f"{root} is in SegNet's CamVid layout (train/ + trainannot/), but its masks hold values {sorted(seen - set(range(12)))[:5]} "
                        "past CamVid's 11 classes and void (11): move it to root/<split>/{images,masks}")  # fmt: skip
    reading = Reading({}, [f"SegNet's CamVid layout ({', '.join(f'{s}/ + {s}annot/' for s in SPLITS if (root / s).is_dir())}): "
                           "CamVid's 11 classes, 11 void (ignored)"], class_path="segsvc.training.datamodule.CamVidDataModule")  # fmt: skip
    return reading


def pair_folders(folder: Path) -> tuple[str, str, str, list[str]] | None:
    """(image folder, mask folder, mask suffix, other pairs that fit) among `folder`'s subfolders; None if none pair."""
    names = {p.name: [f for f in sorted(p.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES] for p in sorted(folder.iterdir()) if p.is_dir()}
    names = {name: files for name, files in names.items() if files}
    scored = []
    for images, image_files in names.items():
        stems = {f.stem for f in image_files}
        for masks, mask_files in names.items():
            if not all(f.suffix.lower() in LOSSLESS for f in mask_files[:20]):
                continue  # JPEG would blur class ids: not masks
            suffix = mask_suffix(stems, mask_files, same=images == masks)
            if suffix is None:
                continue
            paired = sum(pairing_name(f, suffix or None) in stems for f in mask_files)
            hints = word_score(masks, MASK_WORDS) - word_score(images, MASK_WORDS) + word_score(images, IMAGE_WORDS)
            hints -= word_score(masks, INSTANCE_WORDS)  # VOC's SegmentationObject: instances, beside SegmentationClass
            scored.append((paired, hints, images, masks, suffix))
    if not scored:
        return None
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    _, _, images, masks, suffix = scored[0]
    others = [f"masks in {m}/ also pair with the images ({n} files)" for n, _, i, m, _ in scored[1:] if i == images and m != masks and n >= scored[0][0] // 2]
    return images, masks, suffix, others[:2]


def word_score(name: str, words: tuple[str, ...]) -> int:
    return int(any(word in name.lower() for word in words))


def mask_suffix(stems: set[str], mask_files: list[Path], same: bool) -> str | None:
    """"" when masks are named as the images, the common ending (X_mask.png: "_mask.png") otherwise, None if neither."""
    if not same and sum(f.stem in stems for f in mask_files) >= max(1, len(mask_files) // 2):
        return ""
    endings = Counter(f.name[len(stem):] for f in mask_files for stem in [longest_prefix(f.stem, stems)] if stem and stem != f.stem)
    if not endings:
        return None
    ending, count = endings.most_common(1)[0]
    return ending if count >= max(1, len(mask_files) // (4 if same else 2)) else None


def longest_prefix(name: str, stems: set[str]) -> str:
    return max((stem for stem in stems if name.startswith(stem)), key=len, default="")


def list_masks(folder: Path, suffix: str) -> list[Path]:
    return [f for f in sorted(folder.iterdir()) if pairing_name(f, suffix or None) is not None]


def mask_contents(path: Path) -> tuple[dict[int, int], bool]:
    """({value or packed RGB colour: pixels}, whether colours) of one mask; PIL counts (a 12 MP mask in ~0.1 s)."""
    with Image.open(path) as image:
        if image.mode in ("L", "P") and "transparency" not in image.info:  # VOC's palette PNGs: the indices
            return {value: count for count, value in image.getcolors(256)}, False
        if image.mode in ("RGB", "RGBA", "CMYK", "P", "LA", "PA"):
            rgb = image.convert("RGB")
            found = rgb.getcolors(MAX_COLOURS + 1)
            if found is not None and any(r != g or g != b for _, (r, g, b) in found):
                return {int(pack_rgb(np.asarray(colour))): count for count, colour in found}, True
            if found is not None:
                return {colour[0]: count for count, colour in found}, False
            pixels = np.asarray(rgb)
            if not (pixels == pixels[..., :1]).all():
                raise DataError(f"mask {path} holds more than {MAX_COLOURS} colours: not a class palette (saved as JPEG, or smoothed?)")
            pixels = pixels[..., 0]  # grey saved as RGB, with many values
        else:
            pixels = np.asarray(image.convert("L") if image.mode == "1" else image)
    values, counts = np.unique(pixels, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist())), False


def read_encoding(reading: Reading, root: Path, masks: list[Path]) -> None:
    """How the masks encode classes, from their pixels: sets mask_format, palette, mask_values, class_names."""
    colours, values, per_mask = Counter(), Counter(), []
    for path in masks:
        contents, colour = mask_contents(path)
        if colour:
            colours.update(contents)
            continue
        values.update(contents)
        per_mask.append(sorted(contents))
    if colours:
        read_colours(reading, root, colours)
    else:
        read_values(reading, sorted(values), per_mask)


def read_colours(reading: Reading, root: Path, colours: Counter) -> None:
    reading.init_args["mask_format"] = "color"
    if (root / "labelmap.txt").is_file():
        names, palette = read_labelmap(root / "labelmap.txt")
        reading.init_args["labelmap"] = "labelmap.txt"
        unknown = [unpack_rgb(code) for code in colours if unpack_rgb(code) not in palette]
        reading.found.append(f"colour masks; CVAT's labelmap.txt names {len(names)} classes and their colours"
                             + (f" (colours not in it: {unknown[:3]})" if unknown else ""))  # fmt: skip
        return
    if len(colours) > MAX_COLOURS:
        raise DataError(f"the masks hold {len(colours)} colours together: not a class palette (saved as JPEG, or smoothed?)")
    palette = [unpack_rgb(code) for code, _ in colours.most_common()]
    reading.init_args["class_names"] = [f"class_{i}" for i in range(len(palette))]
    reading.init_args["palette"] = [list(colour) for colour in palette]
    reading.found.append(f"colour masks: {len(palette)} colours, one class each, commonest first (name them)")
    if (0, 0, 0) in palette:
        reading.others.append("black as a class (written); or black as void: move it from palette to ignore_values")


def read_values(reading: Reading, values: list[int], per_mask: list[list[int]]) -> None:
    counts = {len(seen) for seen in per_mask}
    contiguous = all(seen == list(range(len(seen))) for seen in per_mask)
    if set(values) == {0, 255}:
        reading.init_args |= {"class_names": ["background", "foreground"], "mask_values": [0, 255]}
        reading.found.append("binary masks: 0 and 255, two classes")
    elif contiguous and len(counts) > 1 and max(values) >= 2:
        top = 255 if max(values) <= 255 else 65535
        reading.init_args |= {"class_names": ["background", "object"], "mask_values": [0, f"1-{top}"]}
        reading.found.append(f"instance ids: each mask holds 0 and 1..n, n from {min(counts) - 1} to {max(counts) - 1}: every object one class")
        reading.others.append(f"each value a class of its own (index masks, {max(values) + 1} classes)")
    elif [v for v in values if v != 255] == list(range(len([v for v in values if v != 255]))):
        classes = len([v for v in values if v != 255])
        reading.init_args["class_names"] = [f"class_{i}" for i in range(classes)]
        reading.found.append(f"class ids 0..{classes - 1} (name them)" + ("; 255 marks void (ignored)" if 255 in values else ""))
        if 255 in values:
            reading.others.append("255 as a class rather than void: list the values in mask_values")
        if contiguous and len(counts) == 1 and classes > 2:
            reading.others.append(f'instance ids (0, then one id per object): mask_values: [0, "1-255"]')
    else:
        kept = [v for v in values if v != 255]
        reading.init_args |= {"class_names": [f"class_{v}" for v in kept], "mask_values": kept}
        reading.found.append(f"mask values {kept} (not 0..K-1): one class each (name them)" + ("; 255 void (ignored)" if 255 in values else ""))
