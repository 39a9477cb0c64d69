"""The exports of labelling tools, made from camvid_mini at test time (`scripts/camvid_formats.py`): YOLO-seg in
Ultralytics' and Roboflow's layouts, LabelMe 3.x and 5.x with and without imageData, VOC with split lists and
CVAT's colour masks with labelmap.txt decode to the source index masks; their edge cases read, and what
does not read is one line naming the file and the line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts.camvid_formats import index_masks, write_exports
from segsvc.data.datasets import CAMVID_CLASSES, DataError
from segsvc.data.voc import read_labelmap
from segsvc.training.datamodule import SegmentationDataModule

VOID = 11
LABELLED = ["background", *CAMVID_CLASSES]  # the polygon formats: CamVid's void is unlabelled, class 0
EXPORTS = {
    "yolo_ultralytics": {"mask_format": "yolo"},
    "yolo_roboflow": {"mask_format": "yolo"},
    "labelme5": {"mask_format": "labelme", "class_names": LABELLED},
    "labelme3": {"mask_format": "labelme", "class_names": LABELLED, "mask_dir": "annotations"},
    "voc": {"class_names": CAMVID_CLASSES, "image_dir": "JPEGImages", "mask_dir": "SegmentationClass",
            "split_lists": "ImageSets/Segmentation"},
    "cvat": {"mask_format": "color", "labelmap": "labelmap.txt", "image_dir": "JPEGImages",
             "mask_dir": "SegmentationClass", "val_fraction": 0.25},
}  # fmt: skip


@pytest.fixture(scope="module")
def exports(tmp_path_factory, camvid_mini) -> Path:
    return write_exports(camvid_mini, tmp_path_factory.mktemp("exports"))


def module(root: Path, **args) -> SegmentationDataModule:
    return SegmentationDataModule(str(root), **{"num_workers": 0, "cache": False, **args})


def expected_mask(source: np.ndarray, name: str) -> np.ndarray:
    """What each export holds for a CamVid index mask: void is VOC's 255, or unlabelled background (class 0)."""
    if name == "voc":
        return np.where(source == VOID, 255, source)
    return np.where(source == VOID, 0, source + 1)


def decoded_masks(data: SegmentationDataModule) -> dict[str, tuple[str, np.ndarray]]:
    """{stem: (split, decoded mask)} over train and val."""
    masks = {}
    for split in ("train", "val"):
        dataset = data.dataset(split)
        for index, (image, _) in enumerate(dataset.pairs):
            masks[image.stem] = (split, dataset.load(index)[1])
    return masks


@pytest.mark.parametrize("name", EXPORTS)
def test_each_export_decodes_to_its_index_source(exports, camvid_mini, name):
    sources = {split: index_masks(camvid_mini, split) for split in ("train", "val")}
    data = module(exports / name, **EXPORTS[name])
    decoded = decoded_masks(data)
    assert decoded.keys() == sources["train"].keys() | sources["val"].keys()
    if name != "cvat":  # the author's split, not one of ours (CVAT's export has one subset: val_fraction)
        assert {stem: split for stem, (split, _) in decoded.items()} == {s: split for split in sources for s in sources[split]}
    classes = 1 + len(CAMVID_CLASSES)
    inter, union = np.zeros(classes), np.zeros(classes)
    for split in sources:
        for stem, source in sources[split].items():
            mask, expected = decoded[stem][1], expected_mask(source, name)
            if name in ("voc", "cvat"):
                np.testing.assert_array_equal(mask, expected, err_msg=f"{name}: {stem}")
            for class_id in range(classes):
                inter[class_id] += ((mask == class_id) & (expected == class_id)).sum()
                union[class_id] += ((mask == class_id) | (expected == class_id)).sum()
    iou = dict(zip(data.class_names, (inter / np.maximum(union, 1)).round(4)))
    labelled = {k: v for k, v in iou.items() if k != "background"}
    assert min(labelled.values()) >= 0.98, iou
    if name.startswith(("yolo", "labelme")):
        # Void inside another class's region is a hole, which a YOLO or LabelMe polygon cannot have: 0.93 here.
        assert iou["background"] >= 0.9, iou


def test_yolo_classes_come_from_data_yaml_with_background_first_and_stale_paths_are_said_once(exports, capsys):
    data = module(exports / "yolo_roboflow", mask_format="yolo")
    assert data.class_names == LABELLED and data.yolo_class_ids == tuple(range(1, 12))
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("segsvc: note:")]
    assert len(notes) == 2, notes
    assert re.fullmatch(r"segsvc: note: .*data\.yaml names folders that do not exist here \(train: /home/author/.*\): "
                        r"reading the folders beside it instead", notes[0])  # fmt: skip
    assert "labels.cache" in notes[1] and "the .txt labels are read instead" in notes[1]
    assert len(data.dataset("val")) == 4  # valid/ is the val split
    unlabelled = module(exports / "yolo_roboflow", mask_format="yolo", background_class=None, ignore_index=255)
    assert unlabelled.class_names == CAMVID_CLASSES and unlabelled.background_id() == 255
    own = module(exports / "yolo_ultralytics", mask_format="yolo", class_names=["car", "background", *CAMVID_CLASSES[:8], *CAMVID_CLASSES[9:]])
    assert own.yolo_class_ids[CAMVID_CLASSES.index("car")] == 0 and own.background_id() == 1  # mapped by name


def test_labelme_finds_images_by_path_by_name_and_embedded(exports):
    pairs = module(exports / "labelme3", **EXPORTS["labelme3"]).dataset("train").pairs
    embedded = [image for image, _ in pairs if image.suffix == ".json"]
    found = [image for image, _ in pairs if image.suffix == ".png"]
    assert len(embedded) == 6 and len(found) == 6 and all(image.parent.name == "images" for image in found)
    assert all(json.loads(p.read_text())["imagePath"].startswith("..\\") for p in embedded)  # a Windows path that does not resolve
    beside = module(exports / "labelme5", **EXPORTS["labelme5"]).dataset("train").pairs
    assert all(image.with_suffix(".json") == source.json_path for image, source in beside)


# --- edge cases, on small synthetic files ------------------------------------------------------------


def yolo_set(tmp_path: Path, labels: dict[str, str], names: list[str] | None = None, size: tuple[int, int] = (40, 30)) -> Path:
    """Ultralytics' layout, a grey image per label file (an empty label text: an image without a label file)."""
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        for stem, text in labels.items():
            Image.new("RGB", size, (90, 90, 90)).save(tmp_path / "images" / split / f"{stem}.png")
            if text:
                (tmp_path / "labels" / split / f"{stem}.txt").write_text(text)
    (tmp_path / "data.yaml").write_text(f"names: {names or ['wall', 'car']}\n")
    return tmp_path


def test_yolo_rings_bare_coordinates_overlaps_and_missing_label_files(tmp_path):
    labels = {
        "a": "0 0 0 1 0 1 1 0 1\n1 0.25 0.4 0.5 0.4 0.5 0.8 0.25 0.8 0.25 0.4",  # open whole-image ring; closed car ring, no newline
        "b": "1 0.25 0.4 0.5 0.4 0.5 0.8 0.25 0.8\n\n0 0 0 1 0 1 1 0 1\n",  # the car first: the smaller still wins
        "c": "",  # no label file: all background
    }
    data = module(yolo_set(tmp_path, labels), mask_format="yolo")
    masks = {image.stem: data.dataset("train").load(i)[1] for i, (image, _) in enumerate(data.dataset("train").pairs)}
    car = np.zeros((30, 40), bool)
    car[12:25, 10:21] = True  # y 0.4..0.8 of 30, x 0.25..0.5 of 40: the pixels the corners fall in, inclusive
    for stem in ("a", "b"):
        np.testing.assert_array_equal(masks[stem], np.where(car, 2, 1), err_msg=stem)
    assert (masks["c"] == 0).all()


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 0.5 0.5 0.2 0.3", r"5 values is a detection box \(class x y w h\), not a polygon"),
        ("1 0.1 0.1 0.9 0.1 0.9", r"an odd count of coordinates \(5\)"),
        ("2 0.1 0.1 0.9 0.1 0.9 0.9", r"class 2 is outside the 2 names \(0\.\.1\)"),
        ("0 0.1 0.1 1.7 0.1 0.9 0.9", r"coordinate 1\.7 lies far outside \[0, 1\]"),
        ("car 0.1 0.1 0.9 0.1 0.9 0.9", r"not a label line"),
    ],
)  # fmt: skip
def test_a_broken_yolo_line_is_one_line_naming_file_and_line(tmp_path, line, message):
    data = module(yolo_set(tmp_path, {"a": f"0 0 0 1 0 1 1\n{line}\n"}), mask_format="yolo")
    with pytest.raises(DataError) as error:
        data.dataset("train").load(0)
    text = str(error.value)
    assert "\n" not in text and re.fullmatch(rf"{re.escape(str(tmp_path / 'labels' / 'train' / 'a.txt'))}:2: {message}.*", text), text


def labelme_file(folder: Path, shapes: list[dict], version: str = "5.4.1", **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30)).save(folder / "x.png")
    content = {"version": version, "flags": {}, "shapes": shapes, "imagePath": "x.png", "imageData": None, **extra}
    (folder / "x.json").write_text(json.dumps(content))
    return folder / "x.json"


def shape(label: str, kind: str | None, points: list) -> dict:
    return {"label": label, "points": points, **({"shape_type": kind} if kind else {}), "flags": {}}


def test_labelme_rectangles_circles_lines_and_no_shapes(tmp_path):
    shapes = [
        shape("wall", "rectangle", [[30, 20], [5, 2]]),  # corners in either order
        shape("car", "circle", [[10, 10], [13, 10]]),  # centre, a point on the circle: radius 3
        shape("car", None, [[30, 25], [35, 25], [35, 28]]),  # LabelMe 3.x without shape_type: a polygon
        shape("wire", "linestrip", [[0, 29], [39, 29]]),
    ]
    labelme_file(tmp_path / "train", shapes, version="3.16.7")
    names = ["background", "wall", "car", "wire"]
    with pytest.raises(DataError, match=r"x\.json: shape 3 \('wire', linestrip\): a linestrip has no area; set `line_width`"):
        module(tmp_path, mask_format="labelme", class_names=names).dataset("train")
    data = SegmentationDataModule(str(tmp_path), names, mask_format="labelme", line_width=1, num_workers=0)
    mask = data.dataset("train").load(0)[1]
    assert (mask[2:21, 5:31][mask[2:21, 5:31] != 2] == 1).all() and (mask[:2] == 0).all()
    assert (mask[10, 7:14] == 2).all() and mask[10, 14] == 1 and (mask[25:29, 30:36] == 2).sum() >= 10
    assert (mask[29] == 3).all() and (mask[22:29, :5] == 0).all()
    labelme_file(tmp_path / "empty" / "train", [])
    empty = SegmentationDataModule(str(tmp_path / "empty"), names, mask_format="labelme", num_workers=0)
    assert (empty.dataset("train").load(0)[1] == 0).all()


@pytest.mark.parametrize(
    "shapes, message",
    [
        ([shape("truck", "polygon", [[0, 0], [5, 0], [5, 5]])], r"shape 0 \('truck', polygon\): label 'truck' is not in class_names"),
        ([shape("car", "mask", [[0, 0], [5, 5]])], r"shape 0 \('car', mask\): shape type 'mask' is not one of polygon, rectangle, circle, line"),
        ([shape("car", "polygon", [[0, 0], [5, 0]])], r"shape 0 \('car', polygon\): needs at least 3 points, got 2"),
    ],
)  # fmt: skip
def test_a_labelme_shape_that_does_not_read_is_one_line(tmp_path, shapes, message):
    path = labelme_file(tmp_path / "train", shapes)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: {message}"):
        SegmentationDataModule(str(tmp_path), ["background", "car"], mask_format="labelme", num_workers=0).dataset("train")


def test_labelme_image_missing_everywhere_names_the_places_looked(tmp_path):
    path = labelme_file(tmp_path / "train", [], imagePath="C:\\Users\\me\\105.jpg")
    (tmp_path / "train" / "x.png").unlink()
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: image 'C:\\\\Users\\\\me\\\\105\.jpg' is not beside it, .*no imageData"):
        SegmentationDataModule(str(tmp_path), ["background"], mask_format="labelme", num_workers=0).dataset("train")


def test_voc_split_lists_rules(exports, tmp_path):
    args = EXPORTS["voc"]
    data = module(exports / "voc", **args)
    assert not data.has_split("test")  # test.txt is empty: no such split
    lists = exports / "voc" / "ImageSets" / "Segmentation"
    first = lists / "train.txt"
    own = {"train": str(first), "val": str(lists / "val.txt")}  # one file per split, any names
    assert [p[0].stem for p in module(exports / "voc", **{**args, "split_lists": own}).dataset("train").pairs] == [
        line for line in first.read_text().splitlines() if line and not line.startswith("#")
    ]
    broken = tmp_path / "lists"
    broken.mkdir()
    (broken / "train.txt").write_text("# ids\n\n0001TP_006690\n0001TP_999999  # gone\n")
    (broken / "val.txt").write_text("0016E5_07959\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(broken / 'train.txt'))}:4: id '0001TP_999999' has no image named 0001TP_999999 in .*JPEGImages$"):
        module(exports / "voc", **{**args, "split_lists": str(broken)}).dataset("train")
    with pytest.raises(DataError, match=r"split_lists folder not found: .*nowhere"):
        module(exports / "voc", **{**args, "split_lists": "nowhere"}).dataset("train")


def test_cvat_labelmap_gives_names_and_colours(exports, tmp_path):
    names, palette = read_labelmap(exports / "cvat" / "labelmap.txt")
    assert names == LABELLED and palette[0] == (0, 0, 0) and palette[4] == (128, 64, 128)
    data = module(exports / "cvat", **EXPORTS["cvat"])
    assert data.class_names == LABELLED and data.palette == palette
    (tmp_path / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\ncar:250,50::\n")
    with pytest.raises(DataError, match=r"labelmap\.txt:3: not a labelmap line \(name:r,g,b:parts:actions\): 'car:250,50::'"):
        read_labelmap(tmp_path / "labelmap.txt")
