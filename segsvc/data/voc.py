"""The Pascal VOC layout as datasets and CVAT publish it: split lists and a label map.

- Split lists (MMSegmentation's `ann_file`): `ImageSets/Segmentation/{train,val,test}.txt`, one image id per
  line, choose each split's pairs among `JPEGImages/` and `SegmentationClass/`, so a model is trained and
  scored on the split the authors published. Blank lines and `#` comments are skipped; an empty or absent
  list means no such split; an id without its image or mask is an error naming the list and the line.
- CVAT's "Segmentation mask" export writes colour masks and `labelmap.txt` (`# label:color_rgb:parts:actions`,
  then `car:250,50,83::`): the class names and the palette, in that order.
"""

from __future__ import annotations

from pathlib import Path

from segsvc.data.layout import DataError, pairing_name

SPLITS = ("train", "val", "test")


def split_list_files(root: Path, split_lists: str | dict[str, str]) -> dict[str, Path]:
    """{split: list file}: a folder holding `<split>.txt`, or one file per split; relative paths are under `root`."""
    if isinstance(split_lists, dict):
        unknown = set(split_lists) - set(SPLITS)
        if unknown:
            raise DataError(f"split_lists names {sorted(unknown)}; its keys are train, val and test")
        files = {split: root / path for split, path in split_lists.items()}
        for split, path in files.items():
            if not path.is_file():
                raise DataError(f"split list for {split} not found: {path}")
        return files
    folder = root / split_lists
    if not folder.is_dir():
        raise DataError(f"split_lists folder not found: {folder}")
    return {split: folder / f"{split}.txt" for split in SPLITS if (folder / f"{split}.txt").is_file()}


def read_split_list(path: Path) -> list[tuple[int, str]]:
    """(line number, id) for each id of a list; blank lines and `#` comments skipped."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"unreadable split list {path}: {error}") from error
    ids = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if words:
            ids.append((number, words[0]))  # ImageSets/Main lists add a flag after the id
    return ids


def listed_pairs(
    list_file: Path, image_dir: Path, mask_dir: Path, image_suffix: str | None, mask_suffix: str | None
) -> list[tuple[Path, Path]]:
    """(image, mask) for each id of the list, in its order."""
    found = {}
    for folder, suffix, option in ((image_dir, image_suffix, "image_dir"), (mask_dir, mask_suffix, "mask_dir")):
        if not folder.is_dir():
            raise DataError(f"folder not found: {folder} (`{option}` names it, relative to root)")
        found[folder] = {pairing_name(path, suffix): path for path in folder.iterdir()}
    pairs = []
    for number, name in read_split_list(list_file):
        image, mask = found[image_dir].get(name), found[mask_dir].get(name)
        if image is None or mask is None:
            missing = f"no image named {name} in {image_dir}" if image is None else f"no mask named {name} in {mask_dir}"
            raise DataError(f"{list_file}:{number}: id {name!r} has {missing}")
        pairs.append((image, mask))
    return pairs


def read_labelmap(path: Path) -> tuple[list[str], list[tuple[int, int, int]]]:
    """(class names, palette) from CVAT's labelmap.txt: `name:r,g,b:parts:actions` per line."""
    names, palette = [], []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"unreadable labelmap {path}: {error}") from error
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rest = line.partition(":")
        try:
            colour = tuple(int(v) for v in rest.split(":", 1)[0].split(","))
        except ValueError:
            colour = ()
        if not name.strip() or len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
            raise DataError(f"{path}:{number}: not a labelmap line (name:r,g,b:parts:actions): {line.strip()[:60]!r}")
        names.append(name.strip())
        palette.append(colour)
    if not names:
        raise DataError(f"{path} names no labels")
    return names, palette


def labelmap_classes(path: Path, class_names: list[str] | None, palette: list | None) -> tuple[list[str], list]:
    """(class names, palette) from a labelmap: its names when none are given, each class's colour when no palette is."""
    names, colours = read_labelmap(path)
    class_names = list(class_names or names)
    for name in class_names:
        if name not in names:
            raise DataError(f"class {name!r} is not in {path} ({', '.join(names)})")
    return class_names, palette or [colours[names.index(name)] for name in class_names]
