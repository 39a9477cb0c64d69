"""camvid_mini (or CamVid) in the other common mask formats, for the walk-through in docs/own-data.md and the tests.

    python scripts/camvid_formats.py --root ../shared/datasets/camvid_mini -o data/camvid_formats

writes, from the index masks of train/ and val/:
    binary/{train,val}/{images,masks}   road-vs-rest masks, 0 = rest, 255 = road (the usual binary PNGs)
    color/{train,val}/{images,masks}    RGB masks in CamVid's colours, void black
    coco/{train,val}/{images,annotations.json}   COCO RLE, one annotation per class per image, void unannotated
    flat/{images,masks}                 all pairs in one folder, index masks (split them with val_fraction)

and the forms data really arrives in (issue 22), from train/ and val/ together (split them with val_fraction):
    instances/{PNGImages,PedMasks}      the street-photo form: X.png with X_mask.png, instance ids (0, then one id
                                        per car, as PennFudanPed numbers people), every image its own crop size
    tiles/Tile 1 ... Tile 3/{images,masks}   the aerial form: folders with spaces, the same file names in each
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segsvc.data.datasets import CAMVID_CLASSES, CAMVID_IGNORE_INDEX, CAMVID_PALETTE  # noqa: E402

ROAD = CAMVID_CLASSES.index("road")


def index_masks(root: Path, split: str) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((root / f"{split}annot").iterdir())}


def uncompressed_rle(binary: np.ndarray) -> dict:
    """COCO's uncompressed RLE (column-major runs, zeros first), as iscrowd exports write it."""
    flat = binary.ravel(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return {"size": list(binary.shape), "counts": ([0] if flat[0] else []) + runs}


def write_coco(masks: dict[str, np.ndarray], out: Path) -> None:
    """One annotation per class present in each image: compressed RLE (pycocotools) and uncompressed, alternately."""
    from pycocotools import mask as coco_mask

    images, annotations = [], []
    for image_id, (stem, mask) in enumerate(masks.items(), start=1):
        images.append({"id": image_id, "file_name": f"{stem}.png", "height": mask.shape[0], "width": mask.shape[1]})
        for class_id in np.unique(mask):
            if class_id == CAMVID_IGNORE_INDEX:
                continue  # void stays unannotated
            binary = mask == class_id
            if len(annotations) % 2:
                segmentation = uncompressed_rle(binary)
            else:
                segmentation = coco_mask.encode(np.asfortranarray(binary.astype(np.uint8)))
                segmentation["counts"] = segmentation["counts"].decode()
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(class_id) + 1,
                                "segmentation": segmentation, "area": int(binary.sum()), "iscrowd": 0})  # fmt: skip
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CAMVID_CLASSES)]
    out.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def copy_images(root: Path, split: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for image in (root / split).iterdir():
        shutil.copy(image, out / image.name)


CAR = CAMVID_CLASSES.index("car")
# Crops (width, height) given in turn to the sorted images: every few images another size, none a multiple of 32.
MIXED_SIZES = [(480, 360), (417, 333), (353, 281), (450, 301), (389, 350)]


def write_instances(root: Path, out: Path) -> Path:
    """PennFudanPed's layout from camvid_mini: PNGImages/X.png, PedMasks/X_mask.png with 0 and one id per car."""
    import cv2

    (out / "PNGImages").mkdir(parents=True, exist_ok=True)
    (out / "PedMasks").mkdir(parents=True, exist_ok=True)
    masks = {**index_masks(root, "train"), **index_masks(root, "val")}
    for i, (stem, mask) in enumerate(sorted(masks.items())):
        width, height = MIXED_SIZES[i % len(MIXED_SIZES)]
        folder = "train" if (root / "train" / f"{stem}.png").is_file() else "val"
        image = Image.open(root / folder / f"{stem}.png").convert("RGB")
        image.crop((0, 0, width, height)).save(out / "PNGImages" / f"{stem}.png")
        _, ids = cv2.connectedComponents((mask[:height, :width] == CAR).astype(np.uint8), connectivity=8)
        Image.fromarray(ids.astype(np.uint8)).save(out / "PedMasks" / f"{stem}_mask.png")
    return out


def write_tiles(root: Path, out: Path, tiles: int = 3) -> Path:
    """The aerial set's layout: `Tile 1/` ... each with images/ and masks/ (index masks) and the same file names."""
    stems = sorted({**index_masks(root, "train"), **index_masks(root, "val")})
    per_tile = len(stems) // tiles
    for tile in range(tiles):
        for j, stem in enumerate(stems[tile * per_tile : (tile + 1) * per_tile]):
            folder = "train" if (root / "train" / f"{stem}.png").is_file() else "val"
            for kind, source in (("images", root / folder / f"{stem}.png"), ("masks", root / f"{folder}annot" / f"{stem}.png")):
                (out / f"Tile {tile + 1}" / kind).mkdir(parents=True, exist_ok=True)
                shutil.copy(source, out / f"Tile {tile + 1}" / kind / f"{j:03d}.png")
    return out


def convert(root: Path, out: Path) -> Path:
    colours = np.zeros((256, 3), np.uint8)
    colours[: len(CAMVID_PALETTE)] = CAMVID_PALETTE  # void (11) -> black
    for split in ("train", "val"):
        for name in ("binary", "color", "coco"):
            copy_images(root, split, out / name / split / "images")
        copy_images(root, split, out / "flat" / "images")
        for folder in (out / "binary" / split / "masks", out / "color" / split / "masks", out / "flat" / "masks"):
            folder.mkdir(parents=True, exist_ok=True)
        masks = index_masks(root, split)
        for stem, mask in masks.items():
            Image.fromarray(np.where(mask == ROAD, 255, 0).astype(np.uint8)).save(out / "binary" / split / "masks" / f"{stem}.png")
            Image.fromarray(colours[mask]).save(out / "color" / split / "masks" / f"{stem}.png")
            Image.fromarray(mask).save(out / "flat" / "masks" / f"{stem}.png")
        write_coco(masks, out / "coco" / split / "annotations.json")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/datasets/camvid_mini", help="CamVid in the SegNet layout")
    parser.add_argument("-o", "--output", default="data/camvid_formats")
    args = parser.parse_args()
    print(f"wrote {convert(Path(args.root), Path(args.output))}")
    write_instances(Path(args.root), Path(args.output) / "instances")
    write_tiles(Path(args.root), Path(args.output) / "tiles")
