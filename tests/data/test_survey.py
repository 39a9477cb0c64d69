"""`segsvc data init` on every format and layout made from camvid_mini: what it detects, the YAML it writes, and
that `segsvc data check` passes that YAML as it is, offline and without a model; bad input is one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from scripts.camvid_formats import convert, write_exports, write_instances, write_tiles
from segsvc.data.datasets import CAMVID_CLASSES
from segsvc.data.survey import survey
from tests.conftest import segsvc_in_process

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")  # main(argv) inside pytest

LABELLED = ["background", *CAMVID_CLASSES]
NUMBERED = [f"class_{i}" for i in range(12)]  # class ids without names: CamVid's void (11) is a class to init
VOC = {"image_dir": "JPEGImages", "mask_dir": "SegmentationClass"}
READINGS = {
    "yolo_ultralytics": {"mask_format": "yolo", "class_names": LABELLED},
    "yolo_roboflow": {"mask_format": "yolo", "class_names": LABELLED},
    "labelme5": {"mask_format": "labelme", "class_names": ["background", *sorted(CAMVID_CLASSES)]},
    "labelme3": {"mask_format": "labelme", "class_names": ["background", *sorted(CAMVID_CLASSES)], "mask_dir": "annotations", "image_dir": "images"},
    "voc": {**VOC, "split_lists": "ImageSets/Segmentation", "class_names": NUMBERED[:11]},
    "cvat": {**VOC, "val_fraction": 0.2, "mask_format": "color", "labelmap": "labelmap.txt"},
    "binary": {"class_names": ["background", "foreground"], "mask_values": [0, 255]},
    "coco": {"mask_format": "coco", "annotations": "annotations.json", "class_names": LABELLED},
    "flat": {"val_fraction": 0.2, "class_names": NUMBERED},
    "instances": {"image_dir": "PNGImages", "mask_dir": "PedMasks", "mask_suffix": "_mask.png", "val_fraction": 0.2,
                  "class_names": ["background", "object"], "mask_values": [0, "1-255"]},
    "tiles": {"val_fraction": 0.2, "class_names": NUMBERED},
    "color_tiles": {"mask_format": "color", "val_fraction": 0.2, "class_names": NUMBERED},  # the aerial set's form
    "coco_roboflow": {"mask_format": "coco", "annotations": "_annotations.coco.json", "class_names": LABELLED},
}  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory, camvid_mini) -> Path:
    out = tmp_path_factory.mktemp("folders")
    convert(camvid_mini, out)
    write_instances(camvid_mini, out / "instances")
    write_tiles(camvid_mini, out / "tiles")
    colour_tiles(out / "color", out / "color_tiles")
    roboflow_coco(out / "coco", out / "coco_roboflow")
    return write_exports(camvid_mini, out)


def colour_tiles(colour: Path, out: Path) -> None:
    """The aerial set's form: `Tile N/images/*.jpg` with `Tile N/masks/*.png` in colours, two tiles."""
    for tile, split in enumerate(("train", "val"), start=1):
        for kind in ("images", "masks"):
            (out / f"Tile {tile}" / kind).mkdir(parents=True)
        for image in sorted((colour / split / "images").iterdir()):
            Image.open(image).convert("RGB").save(out / f"Tile {tile}" / "images" / f"{image.stem}.jpg", quality=90)
            shutil.copy(colour / split / "masks" / image.name, out / f"Tile {tile}" / "masks" / image.name)


def roboflow_coco(coco: Path, out: Path) -> None:
    """Roboflow's COCO export: {train,valid}/ with _annotations.coco.json beside the images, and the project as an
    unused category 0."""
    for split, folder in (("train", "train"), ("val", "valid")):
        shutil.copytree(coco / split / "images", out / folder)
        content = json.loads((coco / split / "annotations.json").read_text())
        content["categories"].insert(0, {"id": 0, "name": "camvid-project", "supercategory": "none"})
        (out / folder / "_annotations.coco.json").write_text(json.dumps(content))


@pytest.mark.parametrize("name", READINGS)
def test_init_detects_each_format_and_its_yaml_passes_the_check_offline(folders, tmp_path, capsys, monkeypatch, name):
    def offline(*args, **kwargs):
        raise AssertionError("the data check asked for model weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    written = tmp_path / "my_data.yaml"
    code, out, err = segsvc_in_process(capsys, "data", "init", str(folders / name), "-o", str(written))
    assert code == 0, err[-2000:]
    init_args = yaml.safe_load(written.read_text())["data"]["init_args"]
    expected = {"root": str(folders / name) + ("/Tile */" if name.endswith("tiles") else ""), **READINGS[name]}
    assert {k: init_args[k] for k in expected} == expected, init_args
    if name.startswith("color"):
        assert init_args["mask_format"] == "color" and len(init_args["palette"]) == 12 and [0, 0, 0] in init_args["palette"]
    assert out.splitlines()[0].startswith("found: ") and f"wrote {written}" in out
    # the YAML as written, with no model section: offline, no weights
    code, out, err = segsvc_in_process(capsys, "data", "check", "--config", str(written), "--trainer.default_root_dir", str(tmp_path / "run"))
    assert code == 0, err[-2000:]
    assert "mask values seen" in out and "recipe (chosen from the data" in out


def test_segnet_camvid_layout_gets_the_camvid_data_module(camvid_mini, tmp_path, capsys):
    written = tmp_path / "camvid.yaml"
    code, out, err = segsvc_in_process(capsys, "data", "init", str(camvid_mini), "-o", str(written))
    assert code == 0 and "found: SegNet's CamVid layout (train/ + trainannot/, val/ + valannot/, test/ + testannot/)" in out, err
    assert yaml.safe_load(written.read_text())["data"] == {"class_path": "segsvc.training.datamodule.CamVidDataModule", "init_args": {"root": str(camvid_mini)}}
    code, out, err = segsvc_in_process(capsys, "data", "check", "--config", str(written), "--trainer.default_root_dir", str(tmp_path / "run"))
    assert code == 0 and "10 bicyclist" in out, err[-2000:]


def test_where_two_readings_fit_the_other_is_named_in_the_yaml_and_the_output(folders, capsys):
    code, out, err = segsvc_in_process(capsys, "data", "init", str(folders / "instances"))
    assert code == 0, err
    assert "# another reading: each value a class of its own (index masks, 9 classes)" in out  # stdout: the YAML alone
    assert "another reading: each value a class of its own" in err and "found: instance ids" in err
    yaml.safe_load(out)
    colours = survey(folders / "color")
    assert colours.others == ["black as a class (written); or black as void: move it from palette to ignore_values"]


def test_voc_with_instance_masks_beside_reads_the_class_masks_and_names_the_others(folders, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(folders / "voc", root)
    shutil.copytree(root / "SegmentationClass", root / "SegmentationObject")  # VOC ships both; they pair alike
    reading = survey(root)
    assert reading.init_args["mask_dir"] == "SegmentationClass"
    assert "masks in SegmentationObject/ also pair with the images (16 files)" in reading.others


def test_yolo_without_class_names_gets_data_yaml_names_in_the_model_too(folders, tmp_path):
    from segsvc.training.cli import build_cli

    config = tmp_path / "yolo.yaml"
    config.write_text(yaml.safe_dump({
        "trainer": {"default_root_dir": str(tmp_path / "run")},
        "model": {"encoder_weights": None},
        "data": {"class_path": "SegmentationDataModule", "init_args": {"root": str(folders / "yolo_ultralytics"), "mask_format": "yolo"}},
    }))  # fmt: skip
    cli = build_cli(["--config", str(config)], run=False)
    assert cli.datamodule.class_names == LABELLED and list(cli.model.model.class_names) == LABELLED


def yolo_detection(root: Path) -> Path:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        (root / "images" / split / "a.jpg").write_bytes(b"")
        (root / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.2 0.3\n")
    return root


def noise_masks(root: Path) -> Path:
    for kind in ("images", "masks"):
        (root / kind).mkdir(parents=True)
    noise = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "images" / "a.png")
    Image.fromarray(noise).save(root / "masks" / "a.png")
    return root


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nope", r"not a folder: .*nope"),
        (noise_masks, r"mask .*masks/a\.png holds more than 64 colours: not a class palette"),
        (lambda p: p, r".*: found no images with masks, YOLO labels, LabelMe or COCO JSON"),
        (yolo_detection, r".* holds YOLO detection labels \(class x y w h, .*a\.txt\): boxes, not polygons"),
    ],
)  # fmt: skip
def test_init_on_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make, message):
    code, _, err = segsvc_in_process(capsys, "data", "init", str(make(tmp_path)))
    assert code == 2 and "Traceback" not in err, err
    line = err.strip()
    assert "\n" not in line and re.fullmatch(rf"segsvc data: error: {message}.*", line), line
