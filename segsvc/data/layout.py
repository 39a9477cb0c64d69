"""Where a dataset's files are, and which image goes with which mask.

Folder and file-name conventions as datasets really arrive, named as MMSegmentation names them: the image
and mask folders (`image_dir`, `mask_dir`), file-name endings (`image_suffix`, `mask_suffix`: X.png pairs
with X_mask.png), and several dataset folders read as one (`root` as a list or a glob). A missing folder or
mask is an error naming it and, when the files that are there suggest it, the option that fixes it.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from segsvc.io.images import IMAGE_SUFFIXES


# Split folders as datasets name them: Roboflow's exports (YOLO, COCO) call the val split valid/.
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def find_split_folder(root: Path, split: str) -> Path | None:
    """`root`'s folder of a split (val: val/, valid/ or validation/), or None."""
    return next((root / name for name in SPLIT_FOLDERS[split] if (root / name).is_dir()), None)


class DataError(ValueError):
    """A dataset problem, always naming the offending file or folder."""

    def __init__(self, message: str = ""):
        # Raised in a DataLoader worker, it comes back re-raised as DataError("Caught DataError in DataLoader
        # worker process 0.\nOriginal Traceback ... DataError: <message>"): keep the one line that says it.
        if message.startswith("Caught DataError in DataLoader worker"):
            message = message.rstrip().splitlines()[-1].split("DataError: ", 1)[-1]
        super().__init__(message)


def pairing_name(path: Path, suffix: str | None) -> str | None:
    """The name an image or mask file pairs by, or None when it is not one.

    No `suffix`: the stem of any image file. A suffix with an extension ("_mask.png") must end the file name;
    one without ("_mask") must end the stem, before any image extension. MMSegmentation's img_suffix/seg_map_suffix.
    """
    if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
        return None
    if suffix is None:
        return path.stem
    whole = os.path.splitext("x" + suffix)[1].lower() in IMAGE_SUFFIXES
    name = path.name if whole else path.stem
    return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else None


def list_pairs(
    image_dir: Path, mask_dir: Path, image_suffix: str | None = None, mask_suffix: str | None = None
) -> list[tuple[Path, Path]]:
    """(image, mask) pairs matched by name (see `pairing_name`); a missing folder or mask, or no images, is an error."""
    for folder, option in ((image_dir, "image_dir"), (mask_dir, "mask_dir")):
        if not folder.is_dir():
            raise DataError(f"folder not found: {folder}{folder_hint(folder, option)}")
    mask_names = {path: pairing_name(path, mask_suffix) for path in mask_dir.iterdir()}
    masks = {name: path for path, name in mask_names.items() if name is not None}
    pairs = []
    for image in sorted(image_dir.iterdir()):
        name = pairing_name(image, image_suffix)
        if name is None or (image_dir == mask_dir and mask_names.get(image) is not None):
            continue  # images and masks in one folder (X.png, X_mask.png): a mask is not an image
        if name not in masks:
            raise DataError(f"no mask for image {image} in {mask_dir}{suffix_hint(image, name, mask_dir)}")
        pairs.append((image, masks[name]))
    if not pairs:
        raise DataError(f"empty split: no images in {image_dir}")
    return pairs


def folder_hint(folder: Path, option: str) -> str:
    """When the parent exists with other folders: name them and the option that picks one."""
    if not folder.parent.is_dir():
        return ""
    others = sorted(p.name for p in folder.parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not others:
        return ""
    return f" ({folder.parent} holds {', '.join(others[:6])}: `{option}` names the folder)"


def suffix_hint(image: Path, name: str, mask_dir: Path) -> str:
    """When a mask named like the image plus a suffix is there: the `mask_suffix` that pairs them."""
    for mask in sorted(mask_dir.iterdir()):
        if mask.name.startswith(name) and mask.suffix.lower() in IMAGE_SUFFIXES and mask.stem != name:
            return f" ({mask.name} is there: if masks are named like that, set `mask_suffix: {mask.name[len(name):]}`)"
    return ""


def resolve_roots(root: str | list[str]) -> list[Path]:
    """`root` as folders: one path, a list, or glob patterns (`data/Tile */`), each pattern's matches sorted."""
    patterns = [root] if isinstance(root, (str, Path)) else list(root)
    if not patterns:
        raise DataError("root is an empty list: name at least one dataset folder")
    roots = []
    for pattern in map(str, patterns):
        if not any(char in pattern for char in "*?["):
            roots.append(Path(pattern))
            continue
        matches = sorted(Path(match) for match in glob.glob(pattern) if Path(match).is_dir())
        if not matches:
            raise DataError(f"root {pattern!r} matches no folder")
        roots += matches
    return roots
