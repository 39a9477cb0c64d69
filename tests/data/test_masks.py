"""Every mask format, made from camvid_mini's index masks, decodes to the same targets and trains via the CLI;
the data check refuses the classic silent failures with one line and exit code 2."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from scripts.camvid_formats import ROAD, convert, index_masks
from segsvc.data.datasets import CAMVID_CLASSES, CAMVID_PALETTE, DataError
from segsvc.data.masks import CocoImage, MaskError, MaskFormat, decode_mask, rasterize_coco
from tests.conftest import SHARED, run_segsvc
from segsvc.training.cli import main
from segsvc.training.datamodule import CamVidDataModule, SegmentationDataModule

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")  # main(argv) inside pytest

VOID = 11
BLACK = (0, 0, 0)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, camvid_mini) -> Path:
    """camvid_mini converted: binary 0/255 road masks, colour masks, COCO JSON (RLE), and a flat folder."""
    return convert(camvid_mini, tmp_path_factory.mktemp("formats"))


CAMVID_ARGS = {"class_names": CAMVID_CLASSES, "ignore_index": VOID, "palette": CAMVID_PALETTE}
FORMATS = {
    "binary": {"class_names": ["rest", "road"], "mask_values": [0, 255]},
    "color": {**CAMVID_ARGS, "mask_format": "color", "ignore_values": [BLACK]},
    "coco": {**CAMVID_ARGS, "mask_format": "coco", "background_class": None},
    "flat": {**CAMVID_ARGS, "val_fraction": 0.25},
}


def module(datasets: Path, name: str, **extra) -> SegmentationDataModule:
    return SegmentationDataModule(str(datasets / name), **{**FORMATS[name], "num_workers": 0, "cache": False, **extra})


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_decodes_to_its_index_source(datasets, camvid_mini, name):
    source = CamVidDataModule(str(camvid_mini), num_workers=0, cache=False)
    formatted = module(datasets, name)
    expected = {**index_masks(camvid_mini, "train"), **index_masks(camvid_mini, "val")}
    if name == "binary":
        expected = {stem: (mask == ROAD).astype(np.uint8) for stem, mask in expected.items()}
    decoded = {}
    for split in ("train", "val"):
        dataset = formatted.dataset(split)
        for index, (image_path, _) in enumerate(dataset.pairs):
            decoded[image_path.stem] = dataset.load(index)[1]
    assert decoded.keys() == expected.keys()
    for stem, mask in expected.items():
        assert decoded[stem].dtype == np.uint8
        np.testing.assert_array_equal(decoded[stem], mask, err_msg=f"{name}: {stem}")
    if name in ("color", "coco"):  # the target tensors the loss sees, padding with the ignore index included
        for (_, ours), (_, theirs) in zip(formatted.dataset("val"), source.dataset("val")):
            assert ours.dtype == theirs.dtype and ours.equal(theirs)


def test_val_fraction_split_is_deterministic_seeded_and_complete(datasets):
    def split(seed: int) -> tuple[list[str], list[str]]:
        data = module(datasets, "flat", split_seed=seed)
        return [p[0].name for p in data.dataset("train").pairs], [p[0].name for p in data.dataset("val").pairs]

    train, val = split(0)
    assert len(val) == 4 and len(train) == 12 and not set(train) & set(val)
    assert split(0) == (train, val)
    assert split(1)[1] != val


def test_check_statistics_are_cached_by_fingerprint(datasets, tmp_path):
    first = module(datasets, "binary", cache=True)
    report = first.check_data(("train", "val"), tmp_path)
    assert not report.refusals and (tmp_path / "data_check.txt").read_text().startswith(report.table)
    assert len(first.dataset("train")._cache) == 12  # measured: every mask decoded
    again = module(datasets, "binary", cache=True)
    assert again.check_data(("train", "val"), tmp_path).table == report.table
    assert len(again.dataset("train")._cache) == 0  # statistics came from data_check.json, nothing decoded
    mask = next((datasets / "binary" / "train" / "masks").iterdir())
    os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 10**9))  # a changed file: measured again
    third = module(datasets, "binary", cache=True)
    third.check_data(("train", "val"), tmp_path)
    assert len(third.dataset("train")._cache) == 12


def test_unknown_value_and_colour_name_file_value_and_pixel_count(datasets, tmp_path):
    mask = np.zeros((30, 40), np.uint8)
    mask[:5, :4] = 128
    Image.fromarray(mask).save(tmp_path / "grey.png")
    with pytest.raises(MaskError, match=r"mask .*grey\.png has value 128 in 20 pixels, not in mask_values"):
        decode_mask(tmp_path / "grey.png", MaskFormat("values", 2, 255, (0, 255)))
    colour = np.zeros((30, 40, 3), np.uint8)
    colour[0, :3] = (1, 2, 3)
    Image.fromarray(colour).save(tmp_path / "rgb.png")
    with pytest.raises(MaskError, match=r"mask .*rgb\.png has colour \(1, 2, 3\) in 3 pixels, not in palette"):
        decode_mask(tmp_path / "rgb.png", MaskFormat("color", 1, 255, (BLACK,)))
    ids = decode_mask(tmp_path / "rgb.png", MaskFormat("color", 1, 255, (BLACK,), ((1, 2, 3),)))
    assert (ids[0, :3] == 255).all() and (ids[1:] == 0).all()


def test_coco_polygons_smaller_instance_wins_and_background_fills(tmp_path):
    big = [[0, 0, 40, 0, 40, 30, 0, 30]]  # the whole 40x30 image
    small = [[10, 10, 20, 10, 20, 20, 10, 20]]  # a 10x10 square inside it
    for order in ([(1, 1, small), (2, 2, big)], [(1, 2, big), (2, 1, small)]):  # either annotation order
        ids = rasterize_coco(CocoImage(tmp_path / "a.json", 1, "a.png", 30, 40, tuple(order), 0), 255)
        assert (ids[10:20, 10:20] == 1).all() and ids.sum() == 100 + 2 * (1200 - 100)
    ids = rasterize_coco(CocoImage(tmp_path / "a.json", 1, "a.png", 30, 40, ((1, 1, small),), 0), 255)
    assert (ids == 1).sum() == 100 and (ids == 0).sum() == 1100


@pytest.mark.parametrize("mode", ["L", "I;16", "RGBA", "P", "CMYK", "exif-rotated"])
def test_images_in_every_mode_pair_with_their_masks(tmp_path, camvid_mini, mode):
    rgb = Image.open(next((camvid_mini / "train").iterdir())).convert("RGB").resize((40, 30))
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir(parents=True)
    mask = np.zeros((30, 40), np.uint8)
    mask[:, 20:] = 1
    Image.fromarray(mask).save(tmp_path / "train" / "masks" / "x.png")
    if mode == "exif-rotated":  # stored 30x40 (portrait), shown 40x30 after the EXIF rotation, like the mask
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display
        rgb.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "train" / "images" / "x.jpg", exif=exif)
    elif mode == "I;16":
        Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257)).save(tmp_path / "train" / "images" / "x.png")
    else:
        image = rgb.convert(mode) if mode != "P" else rgb.quantize(16)
        image.save(tmp_path / "train" / "images" / ("x.tif" if mode == "CMYK" else "x.png"))
    data = SegmentationDataModule(str(tmp_path), ["left", "right"], num_workers=0)
    image, decoded = data.dataset("train").load(0)
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(decoded, mask)


# --- the real CLI ---------------------------------------------------------------------------------


def write_config(
    tmp_path: Path, data_root: Path, data_args: dict, max_epochs: int = 1, train_batches: int = 2, crop: int = 64,
    scale: tuple[float, float] = (0.25, 0.5),
) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "max_epochs": max_epochs, "limit_train_batches": train_batches,
            "limit_val_batches": 1, "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
            "default_root_dir": str(tmp_path / "run"),
            "callbacks": [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                           "init_args": {"save_last": True, "save_top_k": 0}}],
        },
        "model": {"encoder_weights": str(SHARED / "weights" / "mobilenet_v2_imagenet.safetensors"), "lr": 0.003},
        "data": {
            "class_path": "segsvc.training.datamodule.SegmentationDataModule",
            "init_args": {"root": str(data_root), **data_args, "crop_size": [crop, crop], "scale_range": list(scale),
                          "batch_size": 4, "eval_batch_size": 4, "num_workers": 0},
        },
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def run_in_process(capsys, *args: str) -> tuple[int, str]:
    """`segsvc ARGS` in this process (the same main() the console script calls): (exit code, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return exited.value.code, capsys.readouterr().err


def last_scalars(run_dir: Path) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = {}
    for version in sorted((run_dir / "lightning_logs").glob("version_*")):
        events = EventAccumulator(str(version)).Reload()
        scalars |= {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}
    return scalars


@pytest.mark.parametrize("name", ["color", "coco", "flat"])
def test_each_format_trains_a_few_steps_through_the_cli(datasets, tmp_path, imagenet_weights, name):
    config = write_config(tmp_path, datasets / name, FORMATS[name])
    result = run_segsvc("fit", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert "mask values seen" in (tmp_path / "run" / "data_check.txt").read_text()
    assert "val/miou" in last_scalars(tmp_path / "run")


def test_binary_0_255_masks_refused_without_mask_values_then_trained_with_them(datasets, tmp_path, imagenet_weights):
    trap = {"class_names": ["rest", "road"]}  # ignore_index defaults to 255: every road pixel would be ignored
    result = run_segsvc("fit", "--config", str(write_config(tmp_path / "trap", datasets / "binary", trap)))
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("segsvc: error: ") and "255" in last and "`mask_values: [0, 255]`" in last, last
    assert "Traceback" not in result.stderr

    config = write_config(tmp_path / "fixed", datasets / "binary", FORMATS["binary"], max_epochs=6, train_batches=4, crop=128, scale=(0.75, 1.0))  # val runs at scale 1
    result = run_segsvc("fit", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    scalars = last_scalars(tmp_path / "fixed" / "run")
    # the trap gave road IoU 0.0 (every road pixel ignored); trained with mask_values, both classes are learnt
    assert scalars["val/iou_rest"] > 0.5 and scalars["val/iou_road"] > 0.1, scalars  # 24 steps of 128 crops


def refusal_case(tmp_path: Path, datasets: Path, camvid_mini: Path, case: str) -> tuple[Path, str]:
    """A config that `fit` must refuse, and a pattern its one-line message must match."""
    if case == "class never appears":
        args = {"class_names": [*CAMVID_CLASSES, "helicopter"], "ignore_index": 255, "mask_values": [*range(11), 200],
                "ignore_values": [VOID]}  # fmt: skip
        return write_config(tmp_path, datasets / "flat", {**args, "val_fraction": 0.25}), r"class helicopter \(11\) never appears"
    if case == "most pixels ignored":
        args = {"class_names": ["road", "pavement"], "mask_values": [3, 4], "ignore_values": [0, 1, 2, *range(5, 12)]}
        return write_config(tmp_path, datasets / "flat", {**args, "val_fraction": 0.25}), r"\d+% of the train pixels are ignored"
    if case == "empty split":
        (tmp_path / "data" / "val" / "images").mkdir(parents=True)
        (tmp_path / "data" / "val" / "masks").mkdir(parents=True)
        shutil.copytree(datasets / "binary" / "train", tmp_path / "data" / "train")
        return write_config(tmp_path, tmp_path / "data", FORMATS["binary"]), r"empty split: no images in .*val/images"
    coco = tmp_path / "coco"
    shutil.copytree(datasets / "coco", coco)
    annotations = coco / "train" / "annotations.json"
    content = json.loads(annotations.read_text())
    if case == "corrupt json":
        annotations.write_text(annotations.read_text()[:-100])
        pattern = r"corrupt COCO file .*train/annotations\.json"
    elif case == "polygon outside the image":
        content["annotations"][4]["segmentation"] = [[10, 10, 500, 10, 500, 20]]
        pattern = r"annotation 5 in .*train/annotations\.json: polygon point \(500, 10\) lies outside its 480x360 image"
    elif case == "unknown category":
        content["annotations"][2]["category_id"] = 99
        pattern = r"annotation 3 in .*annotations\.json has category_id 99, which is not among the file's categories"
    else:  # "image missing"
        (coco / "train" / "images" / content["images"][1]["file_name"]).unlink()
        pattern = rf"annotations\.json names image {content['images'][1]['file_name']} \(id 2\), not found in .*train/images"
    if case != "corrupt json":
        annotations.write_text(json.dumps(content))
    return write_config(tmp_path, coco, FORMATS["coco"]), pattern


REFUSALS = ["class never appears", "most pixels ignored", "empty split"]
MALFORMED = ["corrupt json", "polygon outside the image", "unknown category", "image missing"]


@pytest.mark.parametrize("case", REFUSALS + MALFORMED)
def test_fit_refuses_with_one_line_and_exit_code_2(datasets, camvid_mini, tmp_path, capsys, imagenet_weights, case):
    import re

    config, pattern = refusal_case(tmp_path, datasets, camvid_mini, case)
    code, stderr = run_in_process(capsys, "fit", "--config", str(config))
    last = stderr.strip().splitlines()[-1]
    assert code == 2 and last.startswith("segsvc: error: ") and re.search(pattern, last), stderr[-2000:]
    assert "Traceback" not in stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before the first step


def test_data_check_prints_the_table_and_refuses_like_fit(datasets, tmp_path, capsys, imagenet_weights):
    config = write_config(tmp_path, datasets / "binary", FORMATS["binary"])
    main(["data", "check", "--config", str(config)])
    out = capsys.readouterr().out
    assert "mask values seen" in out and "0 255" in out and "1 road" in out
    assert (tmp_path / "run" / "data_check.txt").read_text().splitlines()[0] in out
    code, stderr = run_in_process(capsys, "data", "check", "--config", str(config), "--data.init_args.mask_values", "null")
    assert code == 2 and "`mask_values: [0, 255]`" in stderr.strip().splitlines()[-1]


def test_a_layout_without_val_asks_for_val_fraction(datasets):
    data = SegmentationDataModule(str(datasets / "flat"), CAMVID_CLASSES, ignore_index=VOID, num_workers=0)
    with pytest.raises(DataError, match=r"no val split in .*flat: add .*flat/val, or set val_fraction"):
        data.dataset("val")
