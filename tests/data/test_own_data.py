"""Own data as it really arrives (issue 22), made from camvid_mini: mixed image sizes, renamed folders and
`_mask` suffixes, instance-id masks, a glob over folders with spaces and repeated names; a YAML of a few
lines that gets the CLI's defaults and a recipe; `segsvc evaluate --config` on such a folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from scripts.camvid_formats import CAR, MIXED_SIZES, index_masks, write_instances, write_tiles
from segsvc.data.batching import PadCollate, same_size_groups
from segsvc.data.datasets import CAMVID_CLASSES, DataError
from segsvc.data.recipe import choose_checkpoint_interval, choose_class_weighting, choose_crop_size, choose_schedule
from tests.conftest import ROOT, WEIGHTS, run_segsvc, segsvc_in_process
from segsvc.training.cli import build_cli
from segsvc.training.datamodule import SegmentationDataModule

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")  # main(argv) inside pytest

INSTANCES = {  # PennFudanPed's form: one YAML block, no renaming of the dataset
    "class_names": ["background", "car"],
    "image_dir": "PNGImages",
    "mask_dir": "PedMasks",
    "mask_suffix": "_mask.png",
    "mask_values": [0, "1-255"],
    "val_fraction": 0.25,
}


@pytest.fixture(scope="module")
def forms(tmp_path_factory, camvid_mini) -> Path:
    out = tmp_path_factory.mktemp("arrivals")
    write_instances(camvid_mini, out / "instances")
    write_tiles(camvid_mini, out / "tiles")
    return out


def car_masks(camvid_mini: Path) -> dict[str, np.ndarray]:
    masks = {**index_masks(camvid_mini, "train"), **index_masks(camvid_mini, "val")}
    return {stem: (mask == CAR).astype(np.uint8) for stem, mask in masks.items()}


def write_yaml(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


# --- layouts, suffixes, ranges, roots ---------------------------------------------------------------


def test_renamed_folders_mask_suffix_and_instance_ids_as_one_class(forms, camvid_mini):
    data = SegmentationDataModule(str(forms / "instances"), num_workers=0, cache=False, **INSTANCES)
    pairs = data.dataset("train").pairs + data.dataset("val").pairs
    assert len(pairs) == 16 and all(mask.name == f"{image.stem}_mask.png" for image, mask in pairs)
    expected = car_masks(camvid_mini)
    for split in ("train", "val"):
        dataset = data.dataset(split)
        for index, (image, _) in enumerate(dataset.pairs):
            decoded = dataset.load(index)[1]
            height, width = decoded.shape
            np.testing.assert_array_equal(decoded, expected[image.stem][:height, :width], err_msg=image.name)
    assert any(np.asarray(Image.open(mask)).max() >= 3 for _, mask in pairs)  # real instance ids, not 0/1 already
    assert data.mask_format.describe(1) == "1-255"


@pytest.mark.parametrize(
    "drop, pattern",
    [
        ("image_dir", r"folder not found: .*instances/images \(.*instances holds PNGImages, PedMasks: `image_dir` names the folder\)"),
        ("mask_suffix", r"no mask for image .*PNGImages/0001TP_006690\.png in .*PedMasks \(0001TP_006690_mask\.png is there: "
                        r"if masks are named like that, set `mask_suffix: _mask\.png`\)"),
        ("mask_values", r'mask .*_mask\.png has values \[\d.*the values run 0, 1\.\.\d+ like instance ids .*`mask_values: \[0, "1-255"\]`'),
    ],
)  # fmt: skip
def test_data_check_names_the_option_each_form_needs(forms, tmp_path, capsys, drop, pattern):
    args = {k: v for k, v in INSTANCES.items() if k != drop}
    config = write_yaml(tmp_path / "c.yaml", {
        "trainer": {"default_root_dir": str(tmp_path / "run")},
        "model": {"encoder_weights": str(WEIGHTS)},
        "data": {"class_path": "SegmentationDataModule", "init_args": {"root": str(forms / "instances"), "num_workers": 0, **args}},
    })  # fmt: skip
    code, _, err = segsvc_in_process(capsys, "data", "check", "--config", str(config))
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("segsvc: error: ") and re.search(pattern, last), err[-2000:]
    assert "Traceback" not in err


def test_glob_root_over_folders_with_spaces_and_repeated_names(forms, camvid_mini, tmp_path, capsys):
    pattern = f"{forms}/tiles/Tile */"  # as a user writes it in the YAML
    data = SegmentationDataModule(pattern, CAMVID_CLASSES, ignore_index=11, val_fraction=0.25, num_workers=0, cache=False)
    assert [root.name for root in data.roots] == ["Tile 1", "Tile 2", "Tile 3"]
    pairs = data.dataset("train").pairs + data.dataset("val").pairs
    assert len(pairs) == 15 and len({image for image, _ in pairs}) == 15  # 5 names, each in 3 folders: 15 samples
    assert set(Counter(image.name for image, _ in pairs).values()) == {3}
    assert all(image.parent.parent == mask.parent.parent and image.name == mask.name for image, mask in pairs)
    sources = {**index_masks(camvid_mini, "train"), **index_masks(camvid_mini, "val")}
    decoded = {image: data.dataset(split).load(i)[1] for split in ("train", "val") for i, (image, _) in enumerate(data.dataset(split).pairs)}
    assert sorted(m.tobytes() for m in decoded.values()) == sorted(sources[stem].tobytes() for stem in sorted(sources)[:15])
    # The same glob from a YAML, through the data check (jsonargparse reads it as one string)
    config = write_yaml(tmp_path / "tiles.yaml", {
        "trainer": {"default_root_dir": str(tmp_path / "run")},
        "model": {"encoder_weights": str(WEIGHTS)},
        "data": {"class_path": "SegmentationDataModule",
                 "init_args": {"root": pattern, "class_names": CAMVID_CLASSES, "ignore_index": 11, "val_fraction": 0.25}},
    })  # fmt: skip
    code, out, err = segsvc_in_process(capsys, "data", "check", "--config", str(config))
    assert code == 0, err[-2000:]
    assert re.search(r"pairs\s+11\s+4", out), out  # 15 pairs, a quarter to val
    recipe = out[out.index("recipe (chosen from the data"):]  # what fit would choose, and why
    assert "data.crop_size: [256, 256]   (median train image short side 360 px" in recipe  # 480x360 frames
    assert "model.class_weighting: enet   (most/least frequent class" in recipe  # CamVid: bicyclists are rare
    assert "trainer.max_epochs: 2000   (11 train images at batch 8: 1 step(s) per epoch" in recipe
    assert "latest checkpoint every_n_epochs: 50   (about every 50 steps" in recipe
    with pytest.raises(DataError, match=r"root '.*Nope \*/' matches no folder"):
        SegmentationDataModule(f"{forms}/tiles/Nope */", CAMVID_CLASSES, ignore_index=11)


# --- mixed sizes ------------------------------------------------------------------------------------


def test_pad_collate_pads_with_zero_and_ignore_and_keeps_sizes():
    samples = [(torch.ones(3, 64, 96), torch.zeros(64, 96, dtype=torch.long)), (torch.ones(3, 96, 32), torch.ones(96, 32, dtype=torch.long))]
    images, masks, sizes = PadCollate(255)(samples)
    assert images.shape == (2, 3, 96, 96) and masks.shape == (2, 96, 96) and sizes.tolist() == [[64, 96], [96, 32]]
    assert images[0, :, 64:].abs().sum() == 0 and (masks[0, 64:] == 255).all() and (masks[1, :, 32:] == 255).all()
    assert images[1, :, :, :32].eq(1).all() and (masks[1, :, :32] == 1).all()
    assert [(m.tolist(), h, w) for m, h, w in same_size_groups(torch.tensor([[64, 96], [96, 32], [64, 96]]))] == [
        ([0, 2], 64, 96), ([1], 96, 32),
    ]  # fmt: skip


def test_a_failure_in_a_dataloader_worker_is_one_line_naming_the_file(forms, tmp_path):
    """In a process of its own: after a DataLoader worker failed in it, this test process later crashed
    (SIGSEGV) when a child process of a later test exited (torch's SIGCHLD handler watches worker pids)."""
    import shutil

    root = tmp_path / "instances"
    shutil.copytree(forms / "instances", root)
    script = tmp_path / "worker_failure.py"
    script.write_text(WORKER_FAILURE.format(root=str(root), instances=INSTANCES))
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert "\n" not in found["unreadable"] and found["unreadable"].startswith(f"unreadable image {found['broken']}"), found
    assert found["exploded"] == f"{found['first']}: ValueError: augmentation failed", found


WORKER_FAILURE = """
import json
from segsvc.data.datasets import DataError
from segsvc.training.datamodule import SegmentationDataModule


def first_error(data):
    try:
        list(data.val_dataloader())
    except DataError as error:
        return str(error)
    return "no error"


def explode(image, mask):
    raise ValueError("augmentation failed\\nsecond line")


data = SegmentationDataModule({root!r}, num_workers=1, cache=False, eval_batch_size=2, **{instances!r})
broken = data.dataset("val").pairs[1][0]
original = broken.read_bytes()
broken.write_bytes(b"\\x89PNG\\r\\n\\x1a\\n not a png")
unreadable = first_error(data)
broken.write_bytes(original)
dataset = data.dataset("val")
dataset.transform = explode  # any other error in the worker: one line, the file named
exploded = first_error(data)
print(json.dumps({{"unreadable": unreadable, "broken": str(broken), "exploded": exploded, "first": str(dataset.pairs[0][0])}}))
"""


# --- the recipe -------------------------------------------------------------------------------------


def test_recipe_choices_follow_the_data():
    assert choose_class_weighting([900, 10], ["a", "b"]).value == "enet"
    assert choose_class_weighting([600, 400], ["a", "b"]).value == "none"
    assert choose_class_weighting([850, 150], ["background", "person"]).value == "none"  # two classes: 10:1 as before
    aerial = choose_class_weighting([54, 13, 12, 12, 9], ["building", "land", "road", "vegetation", "water"])  # 6:1, rarest 9%
    assert aerial.value == "enet" and "6.0:1" in aerial.reason and "at least 3:1 for 5 classes" in aerial.reason
    assert choose_class_weighting([35, 33, 32], ["a", "b", "c"]).value == "none"
    near = choose_class_weighting([58, 22, 20], ["a", "b", "c"])  # 2.9:1, just under the rule
    assert near.value == "none" and "2.9:1" in near.reason and "under 3:1 for 3 classes" in near.reason
    epochs, every = choose_schedule(18, 8)  # 18 photos at batch 8: 2 steps per epoch
    assert epochs.value * 2 >= 2000 and every.value == epochs.value // 25
    assert choose_schedule(1000, 8)[0].value == 100  # a larger set: about 100 epochs
    assert choose_checkpoint_interval(18, 8).value == 25 and choose_checkpoint_interval(367, 8).value == 1
    assert choose_crop_size({"480x360": 10}).value == (256, 256)
    photos = choose_crop_size({"3024x4032": 5, "4032x3024": 4})  # 12 MP phone photos, both orientations
    assert photos.value == (512, 512) and photos.reason.endswith(
        "the model trains on 512x512 crops of the images at 0.5-2x their own size (up to 3024x4032) and serves whole images at their own size"
    )
    assert choose_crop_size({"2149x1480": 3, "509x544": 1}).value == (512, 512)
    assert choose_crop_size({"253x311": 5, "1017x581": 1}).value == (160, 160)


# --- a YAML of a few lines, through the real CLI ------------------------------------------------------


def minimal_yaml(tmp_path: Path, root: Path) -> Path:
    """What a user writes: the run's folder, the data, two settings for a test's speed; nothing of ours."""
    return write_yaml(tmp_path / "mine.yaml", {
        "trainer": {"default_root_dir": str(tmp_path / "run"), "max_epochs": 2, "limit_train_batches": 2,
                    "log_every_n_steps": 1, "accelerator": "cpu", "enable_progress_bar": False},
        "model": {"encoder_weights": str(WEIGHTS)},  # no downloads in tests; a user's default is "imagenet"
        "data": {"class_path": "SegmentationDataModule",
                 "init_args": {"root": str(root), **INSTANCES, "batch_size": 4, "eval_batch_size": 3, "num_workers": 1,
                               "scale_range": [0.25, 0.5]}},
    })  # fmt: skip


@pytest.fixture(scope="module")
def minimal_run(forms, tmp_path_factory, imagenet_weights) -> Path:
    tmp_path = tmp_path_factory.mktemp("minimal")
    config = minimal_yaml(tmp_path, forms / "instances")
    result = run_segsvc("fit", "--config", str(config))  # mixed sizes, eval batches of 3, in a worker process
    assert result.returncode == 0, result.stderr[-3000:]
    (tmp_path / "run" / "stdout.txt").write_text(result.stdout)
    return tmp_path / "run"


def test_minimal_yaml_gets_checkpoints_overlays_tensorboard_and_a_recipe(minimal_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert len(list((minimal_run / "checkpoints").glob("best-epoch*.ckpt"))) == 1
    assert (minimal_run / "checkpoints" / "latest.ckpt").is_file() and (minimal_run / "checkpoints" / "last.ckpt").exists()
    assert sorted(p.name for p in minimal_run.glob("lightning_logs/version_0/overlays/*.png")) == ["epoch000.png", "epoch001.png"]
    events = EventAccumulator(str(minimal_run / "lightning_logs" / "version_0")).Reload()
    assert {"val/miou", "val/iou_car", "lr-AdamW/pg1", "time/epoch_s", "train/loss_epoch"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("val/miou")) == 2 and len(events.Images("val/overlays")) == 2
    recipe = (minimal_run / "recipe.txt").read_text()
    saved = torch.load(minimal_run / "checkpoints" / "latest.ckpt", map_location="cpu", weights_only=False)
    chosen = saved["hyper_parameters"]["class_weighting"]
    assert chosen in ("enet", "none") and f"model.class_weighting: {chosen}   (most/least frequent class" in recipe
    crop = re.search(r"data.crop_size: \[(\d+), (\d+)\]", recipe)
    assert crop and int(crop[1]) % 32 == 0 and crop[1] == crop[2], recipe
    assert "trainer.max_epochs" not in recipe  # the YAML set it: explicit values win
    stdout = (minimal_run / "stdout.txt").read_text()
    assert "recipe (chosen from the data" in stdout
    assert re.search(r"segsvc: trained 2 epoch\(s\) \(to epoch 2\) in \d+ min \d\d s", stdout), stdout[-2000:]
    assert re.search(r"segsvc: best checkpoint \S+best-epoch00\d.ckpt \(val/miou \d\.\d{4}\)", stdout), stdout[-2000:]
    assert (saved["hyper_parameters"]["loss"], saved["hyper_parameters"]["aux_weight"]) == ("ohem", 0.4)  # own data gets the recipe


def test_each_default_can_be_switched_off_or_replaced(tmp_path, imagenet_weights, forms):
    config = minimal_yaml(tmp_path, forms / "instances")
    off = build_cli(["--config", str(config), "--trainer.enable_checkpointing", "false", "--trainer.logger", "false",
                     "--trainer.plugins", "[]"], run=False)  # fmt: skip
    names = {type(c).__name__ for c in off.trainer.callbacks}
    assert "ModelCheckpoint" not in names and "LearningRateMonitor" not in names and "ValidationOverlays" in names
    assert off.trainer.logger is None and type(off.trainer.strategy.checkpoint_io).__name__ != "AtomicCheckpointIO"
    mine = [{"class_path": "segsvc.training.callbacks.ValidationOverlays", "init_args": {"num_images": 5}}]
    replaced = build_cli(["--config", str(config), "--trainer.callbacks", json.dumps(mine)], run=False)
    overlays = [c for c in replaced.trainer.callbacks if type(c).__name__ == "ValidationOverlays"]
    assert len(overlays) == 1 and overlays[0].num_images == 5
    assert not any(type(c).__name__ == "LearningRateMonitor" for c in replaced.trainer.callbacks)
    assert [c.monitor for c in replaced.trainer.checkpoint_callbacks] == [None]  # only Lightning's own last-epoch one
    default = build_cli(["--config", str(config)], run=False)
    assert type(default.trainer.strategy.checkpoint_io).__name__ == "AtomicCheckpointIO"
    assert {str(Path(c.dirpath)) for c in default.trainer.checkpoint_callbacks} == {str(tmp_path / "run" / "checkpoints")}


def validate(checkpoint: Path, root: Path, eval_batch_size: int) -> dict[str, float]:
    import pytorch_lightning as pl

    from segsvc.training.module import SegmentationModule

    module = SegmentationModule.load_from_checkpoint(checkpoint, map_location="cpu", encoder_weights=None)
    data = SegmentationDataModule(str(root), **INSTANCES, eval_batch_size=eval_batch_size, num_workers=0)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return trainer.validate(module, datamodule=data, verbose=False)[0]


@pytest.fixture(scope="module")
def mixed_camvid(forms, camvid_mini) -> Path:
    """camvid_mini's val images and index masks, each cropped to another size (none a multiple of 32)."""
    root = forms / "mixed"
    for kind in ("images", "masks"):
        (root / "val" / kind).mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(sorted((camvid_mini / "val").iterdir())):
        box = (0, 0, *MIXED_SIZES[i % len(MIXED_SIZES)])
        Image.open(image).crop(box).save(root / "val" / "images" / image.name)
        Image.open(camvid_mini / "valannot" / image.name).crop(box).save(root / "val" / "masks" / image.name)
    return root


def test_mixed_sizes_validate_with_the_metrics_of_batch_size_one(mixed_camvid, camvid_mini):
    """The shipped model (trained, so context changes its answers) on val images of four sizes."""
    import pytorch_lightning as pl

    from segsvc.evaluation.evaluate import evaluate_folder
    from segsvc.training.module import SegmentationModule

    module = SegmentationModule(num_classes=11, class_names=CAMVID_CLASSES, ignore_index=11, init_model="default")
    results = []
    for batch_size in (1, 4, 3):
        data = SegmentationDataModule(str(mixed_camvid), CAMVID_CLASSES, ignore_index=11, eval_batch_size=batch_size, num_workers=0)
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        results.append(trainer.validate(module, datamodule=data, verbose=False)[0])
    one = results[0]
    for batched in results[1:]:
        for key in ("val/miou", "val/pixel_acc", "val/iou_car", "val/iou_road"):
            assert batched[key] == pytest.approx(one[key], abs=1e-6), (key, one, batched)
    full = evaluate_folder(module.model.eval(), mixed_camvid / "val" / "images", mixed_camvid / "val" / "masks", 11, 11)
    assert one["val/miou"] == pytest.approx(full["miou"], abs=1e-4) and one["val/miou"] > 0.5  # a trained model's score


def test_evaluate_config_scores_a_model_folder_on_the_folder_format(minimal_run, forms, tmp_path):
    model = tmp_path / "model"
    result = run_segsvc("export", str(minimal_run / "checkpoints" / "latest.ckpt"), "-o", str(model))
    assert result.returncode == 0, result.stderr[-2000:]
    config = minimal_yaml(tmp_path, forms / "instances")
    picture = tmp_path / "confusion.png"
    result = run_segsvc("evaluate", str(model), "--config", str(config), "--split", "val", "--confusion", str(picture))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["images"] == 4 and set(report["iou"]) == {"background", "car"}
    # full resolution through the library's predict_mask == Lightning's validation on the same weights
    validated = validate(minimal_run / "checkpoints" / "latest.ckpt", forms / "instances", 2)
    assert report["miou"] == pytest.approx(validated["val/miou"], abs=1e-3)
    assert report["pixel_accuracy"] == pytest.approx(validated["val/pixel_acc"], abs=1e-3)
    assert Image.open(picture).size[0] >= 330 and report["confusion_picture"] == str(picture)
    bad = run_segsvc("evaluate", str(model), "--config", str(config), "--split", "test")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("segsvc evaluate: error: no test split in ")
    renamed = yaml.safe_load(config.read_text())
    renamed["data"]["init_args"]["class_names"] = ["background", "person"]  # as many classes, not the model's
    bad = run_segsvc("evaluate", str(model), "--config", str(write_yaml(tmp_path / "renamed.yaml", renamed)), "--split", "val")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == (
        f"segsvc evaluate: error: the model's classes ['background', 'car'] are not the data's ['background', 'person'] in {tmp_path / 'renamed.yaml'}"
    )


def test_imagenet_by_default_and_offline_without_the_file_is_one_line(forms, tmp_path, capsys, monkeypatch):
    """The CLI's encoder default is torchvision's ImageNet file; offline without it in torch's cache: one line."""
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)  # never the network in tests
    config = minimal_yaml(tmp_path, forms / "instances")
    settings = yaml.safe_load(config.read_text())
    del settings["model"]  # a user's YAML: nothing about the encoder
    write_yaml(config, settings)
    code, _, err = segsvc_in_process(capsys, "fit", "--config", str(config))
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert last.startswith("segsvc: error: encoder_weights: imagenet: torchvision's MobileNetV2 weights are not in ")
    assert "or to null to train from scratch" in last
    for spelling in ("null", "none"):  # from scratch only when asked, and then with a word
        code, _, err = segsvc_in_process(capsys, "fit", "--config", str(config), "--model.encoder_weights", spelling,
                                      "--data.init_args.root", str(tmp_path / "missing"))  # fmt: skip
        assert code == 2 and "warning: model.encoder_weights is null: the encoder starts from random weights" in err, err


@pytest.mark.parametrize(
    "override, message",
    [
        ('--data.init_args.mask_values=[0, "9-3"]', "mask_values range '9-3' is empty or negative; write it low-high, e.g. \"1-255\""),
        ("--data.init_args.root={forms}/Tile ?/", "root '{forms}/Tile ?/' matches no folder"),
    ],
)  # fmt: skip
def test_a_bad_option_is_one_line_from_fit_not_a_traceback(forms, tmp_path, capsys, override, message):
    """Raised in the data module's __init__, which jsonargparse wraps in a multi-line error of its own."""
    config = minimal_yaml(tmp_path, forms / "instances")
    code, _, err = segsvc_in_process(capsys, "fit", "--config", str(config), override.format(forms=forms))
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == f"segsvc: error: {message.format(forms=forms)}"


def test_overlay_rows_of_large_tiles_are_shrunk_to_the_panel_width():
    from segsvc.training.callbacks import shrink

    row = np.zeros((1480, 3 * 2149, 3), np.uint8)  # image | truth | prediction of the largest aerial tile
    assert shrink(row, 3 * 640).shape == (441, 1920, 3)
    assert shrink(np.zeros((360, 1440, 3), np.uint8), 3 * 640).shape == (360, 1440, 3)  # CamVid stays as it is
