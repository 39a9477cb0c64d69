"""camvid_mini (or CamVid) in the other common mask formats, for the walk-through in docs/own-data.md and the tests.

    python scripts/camvid_formats.py --root ../shared/datasets/camvid_mini -o data/camvid_formats

writes, from the index masks of train/ and val/:
    binary/{train,val}/{images,masks}   road-vs-rest masks, 0 = rest, 255 = road (the usual binary PNGs)
    color/{train,val}/{images,masks}    RGB masks in CamVid's colours, void black
    coco/{train,val}/{images,annotations.json}   COCO RLE, one annotation per class per image, void unannotated
    flat/{images,masks}                 all pairs in one folder, index masks (split them with val_fraction)

the exports of labelling tools (`write_exports`), CamVid's void unlabelled (background), from train/ and val/:
    yolo_ultralytics/{images,labels}/{train,val} + data.yaml   YOLO-seg polygons, Ultralytics' layout
    yolo_roboflow/{train,valid}/{images,labels} + data.yaml    Roboflow's export: absolute paths of another
                                        machine in data.yaml, a stale labels.cache
    labelme5/{train,val}/X.json + X.png LabelMe 5.x beside its images, no imageData
    labelme3/{train,val}/{annotations,images}   LabelMe 3.x: a Windows imagePath that does not resolve, the
                                        image embedded as imageData (every other image file left out)
    voc/{JPEGImages,SegmentationClass,ImageSets/Segmentation}   VOC palette PNGs (void 255), split lists
                                        (train, val, and an empty test)
    cvat/{JPEGImages,SegmentationClass,labelmap.txt}   CVAT's "Segmentation mask" export: colour PNGs

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


# --- exports of labelling tools --------------------------------------------------------------------


def camvid_pairs(root: Path, splits: tuple[str, ...] = ("train", "val")) -> dict[str, dict[str, tuple[Path, np.ndarray]]]:
    """{split: {stem: (image file, index mask)}}."""
    return {split: {stem: (root / split / f"{stem}.png", mask) for stem, mask in index_masks(root, split).items()} for split in splits}


def mask_polygons(mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(class id, outer boundary (N, 2) as pixel x, y) of every connected region of every class but void.

    Outer boundaries only (no holes): what YOLO and LabelMe polygons hold. What fills a hole is a region of its
    own, smaller than the polygon around it, so it lands on top when rasterised smaller-first."""
    import cv2

    polygons = []
    for class_id in np.unique(mask):
        if class_id == CAMVID_IGNORE_INDEX:
            continue
        contours, hierarchy = cv2.findContours((mask == class_id).astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        for contour, (_, _, _, parent) in zip(contours, hierarchy[0]):
            if parent == -1:  # an outer boundary, not a hole
                points = contour[:, 0, :]
                points = np.concatenate([points, points[-1:].repeat(max(0, 3 - len(points)), 0)])  # a pixel or a line: 3 points
                polygons.append((int(class_id), points))
    return polygons


def write_yolo(root: Path, out: Path, layout: str) -> Path:
    """YOLO-seg labels in Ultralytics' (`images/train`) or Roboflow's (`train/images`, `valid/`) layout, with data.yaml."""
    folders = {"train": "train", "val": "val" if layout == "ultralytics" else "valid"}
    for split, pairs in camvid_pairs(root).items():
        folder = folders[split]
        images, labels = (out / "images" / folder, out / "labels" / folder) if layout == "ultralytics" else (out / folder / "images", out / folder / "labels")
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for stem, (image, mask) in pairs.items():
            shutil.copy(image, images / image.name)
            height, width = mask.shape
            lines = [" ".join([str(class_id)] + [f"{(x + 0.5) / width:.6f} {(y + 0.5) / height:.6f}" for x, y in points])
                     for class_id, points in mask_polygons(mask)]  # fmt: skip
            (labels / f"{stem}.txt").write_text("\n".join(lines))  # no trailing newline, as some exporters write
        if layout == "roboflow":
            (out / folder / "labels.cache").write_bytes(b"\x80\x04stale pickle of another machine")
    where = "/home/author/datasets/camvid-seg"  # the author's machine, as Roboflow writes it
    names = "[" + ", ".join(CAMVID_CLASSES) + "]"
    (out / "data.yaml").write_text(f"train: {where}/{folders['train']}/images\nval: {where}/{folders['val']}/images\n\nnc: {len(CAMVID_CLASSES)}\nnames: {names}\n")
    return out


def labelme_json(stem: str, mask: np.ndarray, image_path: str, version: str, image_data: str | None) -> dict:
    shapes = [{"label": CAMVID_CLASSES[class_id], "points": points.astype(float).tolist(), "shape_type": "polygon", "flags": {}}
              for class_id, points in mask_polygons(mask)]  # fmt: skip
    if version.startswith("5"):
        shapes = [{**shape, "group_id": None, "description": ""} for shape in shapes]
    else:
        shapes = [{**shape, "line_color": None, "fill_color": None} for shape in shapes]
    content = {"version": version, "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": image_data}
    if version.startswith("5"):
        content |= {"imageHeight": int(mask.shape[0]), "imageWidth": int(mask.shape[1])}
    return content


def write_labelme(root: Path, out: Path, version: str) -> Path:
    """LabelMe 5.x: X.json beside X.png, no imageData. LabelMe 3.x: annotations/X.json with a Windows imagePath
    that does not resolve, the image embedded; every other image in images/, the rest only embedded."""
    import base64

    for split, pairs in camvid_pairs(root).items():
        for i, (stem, (image, mask)) in enumerate(pairs.items()):
            if version.startswith("5"):
                (out / split).mkdir(parents=True, exist_ok=True)
                shutil.copy(image, out / split / image.name)
                content, target = labelme_json(stem, mask, image.name, version, None), out / split / f"{stem}.json"
            else:
                for folder in ("annotations", "images"):
                    (out / split / folder).mkdir(parents=True, exist_ok=True)
                if i % 2 == 0:
                    shutil.copy(image, out / split / "images" / image.name)
                data = base64.b64encode(image.read_bytes()).decode()
                content, target = labelme_json(stem, mask, f"..\\{image.name}", version, data), out / split / "annotations" / f"{stem}.json"
            target.write_text(json.dumps(content))
    return out


def voc_folders(out: Path, void: tuple[int, int, int]) -> np.ndarray:
    """VOC's folders made in `out`; a 256-entry colour table: CamVid's colour by class id, `void` for the rest."""
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    colours = np.full((256, 3), void, np.uint8)
    colours[: len(CAMVID_PALETTE)] = CAMVID_PALETTE
    return colours


def write_voc(root: Path, out: Path) -> Path:
    """VOC's layout: JPEGImages, SegmentationClass (P-mode PNGs, void 255) and the split lists, test.txt empty."""
    palette = voc_folders(out, (224, 224, 192))  # VOC's void border colour
    for split, pairs in camvid_pairs(root).items():
        for stem, (image, mask) in pairs.items():
            Image.open(image).convert("RGB").save(out / "JPEGImages" / f"{stem}.jpg", quality=95)
            indexed = Image.fromarray(np.where(mask == CAMVID_IGNORE_INDEX, 255, mask).astype(np.uint8), mode="P")
            indexed.putpalette(palette.ravel().tolist())
            indexed.save(out / "SegmentationClass" / f"{stem}.png")
        ids = "\n".join(pairs)
        (out / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(f"# {split} ids, one per line\n{ids}\n\n")
    (out / "ImageSets" / "Segmentation" / "test.txt").write_text("")
    return out


def write_cvat(root: Path, out: Path) -> Path:
    """CVAT's "Segmentation mask 1.1" export: JPEGImages, colour SegmentationClass PNGs, labelmap.txt, default.txt."""
    colours = voc_folders(out, (0, 0, 0))  # void -> black, CVAT's background
    stems = []
    for pairs in camvid_pairs(root).values():
        for stem, (image, mask) in pairs.items():
            Image.open(image).convert("RGB").save(out / "JPEGImages" / f"{stem}.jpg", quality=95)
            Image.fromarray(colours[mask]).save(out / "SegmentationClass" / f"{stem}.png")
            stems.append(stem)
    lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    lines += [f"{name}:{','.join(map(str, colour))}::" for name, colour in zip(CAMVID_CLASSES, CAMVID_PALETTE)]
    (out / "labelmap.txt").write_text("\n".join(lines) + "\n")
    (out / "ImageSets" / "Segmentation" / "default.txt").write_text("\n".join(stems) + "\n")
    return out


EXPORTS = {
    "yolo_ultralytics": lambda root, out: write_yolo(root, out, "ultralytics"),
    "yolo_roboflow": lambda root, out: write_yolo(root, out, "roboflow"),
    "labelme5": lambda root, out: write_labelme(root, out, "5.4.1"),
    "labelme3": lambda root, out: write_labelme(root, out, "3.16.7"),
    "voc": write_voc,
    "cvat": write_cvat,
}


def write_exports(root: Path, out: Path, names: tuple[str, ...] = tuple(EXPORTS)) -> Path:
    for name in names:
        EXPORTS[name](root, out / name)
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
    write_exports(Path(args.root), Path(args.output))
