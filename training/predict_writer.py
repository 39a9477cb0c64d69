"""Bulk prediction over an image folder as a Lightning predict loop: `segsvc predict --model M --input DIR --output OUT`.

    OUT/masks/<relative path>.png     palettized mask (one byte per pixel = class id), like the service's
    OUT/overlays/<relative path>.jpg  with --overlays: the image with the coloured mask blended on it
    OUT/class_shares.csv              per image: width, height and the share of each class
    OUT/errors.csv                    images that could not be read in the last run, and why

Each process takes every world_size-th image of the sorted list (no padding, so no image is done twice)
and skips images whose outputs exist, so a rerun after a crash resumes. Outputs are written atomically.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import nn
from torch.utils.data import DataLoader, Dataset

import segsvc
from segsvc.io.images import decode_image
from segsvc.io.visualize import overlay, palettized

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")  # what the service reads
PARTS = ".parts"  # per-rank CSV shards, merged by rank 0 at the end


class Outputs:
    """Where the outputs for an input image (given by its path relative to the input folder) go."""

    def __init__(self, root: str | Path, overlays: bool):
        self.root, self.overlays = Path(root), overlays

    def mask(self, relative: str) -> Path:
        return self.root / "masks" / Path(relative).with_suffix(".png")

    def overlay(self, relative: str) -> Path:
        return self.root / "overlays" / Path(relative).with_suffix(".jpg")

    def done(self, relative: str) -> bool:
        return self.mask(relative).is_file() and (not self.overlays or self.overlay(relative).is_file())


def list_images(root: Path, exclude: Path) -> list[str]:
    """Image files under `root`, recursively, as sorted relative paths; nothing under `exclude` (the output)."""
    exclude = exclude.resolve()
    found = []
    for path in root.rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.resolve().is_relative_to(exclude):
            found.append(path.relative_to(root).as_posix())
    return sorted(found)


class ImageFiles(Dataset):
    """Relative paths -> {"path", "image": RGB uint8 (H, W, 3) or None, "error": None or why it is unreadable}."""

    def __init__(self, root: Path, paths: list[str | None]):
        self.root, self.paths = root, paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        if path is None:
            return {"path": None, "image": None, "error": None}
        try:
            return {"path": path, "image": decode_image((self.root / path).read_bytes()), "error": None}
        except (OSError, ValueError) as exc:  # ImageError is a ValueError
            return {"path": path, "image": None, "error": str(exc)}


def single(batch: list[dict]) -> dict:
    return batch[0]  # batch size 1: images differ in size


class ImageFolderData(pl.LightningDataModule):
    def __init__(self, input: str | Path, outputs: Outputs, num_workers: int = 0):
        super().__init__()
        self.input, self.outputs, self.num_workers = Path(input), outputs, num_workers
        self.skipped = 0

    def setup(self, stage: str) -> None:
        # Split the full sorted list by rank before looking at what exists: every image belongs to exactly
        # one rank whatever the other ranks have written meanwhile.
        rank, world = self.trainer.global_rank, self.trainer.world_size
        mine = list_images(self.input, self.outputs.root)[rank::world]
        todo = [path for path in mine if not self.outputs.done(path)]
        self.skipped = len(mine) - len(todo)
        # Lightning refuses a rank with an empty DataLoader under DDP: an idle rank gets one no-op item
        self.dataset = ImageFiles(self.input, todo or [None])

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=1, num_workers=self.num_workers, collate_fn=single)


class MaskPredictor(pl.LightningModule):
    """A thin shell over `segsvc.predict_mask`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def predict_step(self, item: dict, batch_idx: int) -> dict:
        if item["path"] is None or item["error"] is not None:
            return item
        return {**item, "mask": segsvc.predict_mask(self.model, item["image"])}


def write_atomically(path: Path, image: Image.Image, **params) -> None:
    """Write via a temporary name, so a crash never leaves a torn file that a rerun would take as done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    image.save(partial, format=params.pop("format"), **params)
    os.replace(partial, path)


class MaskWriter(BasePredictionWriter):
    def __init__(self, outputs: Outputs, class_names: list[str], palette: list[tuple[int, int, int]]):
        super().__init__(write_interval="batch")
        self.outputs, self.class_names, self.palette = outputs, class_names, palette
        self.written = self.errors = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        parts = self.outputs.root / PARTS
        parts.mkdir(parents=True, exist_ok=True)
        rank = trainer.global_rank
        # shares accumulate over runs (resume); errors are the last run's
        self.shares_file = (parts / f"class_shares-rank{rank}.csv").open("a", newline="")
        self.errors_file = (parts / f"errors-rank{rank}.csv").open("w", newline="")
        self.shares, self.errors_csv = csv.writer(self.shares_file), csv.writer(self.errors_file)

    def write_on_batch_end(self, trainer, pl_module, prediction: dict, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        path = prediction["path"]
        if path is None:
            return
        if prediction["error"] is not None:
            self.errors_csv.writerow([path, prediction["error"]])
            self.errors_file.flush()
            self.errors += 1
            return
        mask = prediction["mask"]
        counts = np.bincount(mask.ravel(), minlength=len(self.class_names))[: len(self.class_names)]
        # the row first, then the mask: a crash between them repeats the row (merged away), never loses it
        self.shares.writerow([path, mask.shape[1], mask.shape[0], *(f"{c / mask.size:.6f}" for c in counts)])
        self.shares_file.flush()
        if self.outputs.overlays:
            blended = Image.fromarray(overlay(prediction["image"], mask, self.palette))
            write_atomically(self.outputs.overlay(path), blended, format="JPEG", quality=90)
        write_atomically(self.outputs.mask(path), palettized(mask, self.palette), format="PNG", compress_level=1)
        self.written += 1

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # teardown, not on_predict_end: a rank with nothing left to do skips the loop and its hooks
        self.shares_file.close()
        self.errors_file.close()
        skipped = trainer.datamodule.skipped
        totals = torch.tensor([self.written, skipped, self.errors], device=trainer.strategy.root_device)
        totals = trainer.strategy.reduce(totals, reduce_op="sum").tolist()  # also a barrier: every shard is closed
        if trainer.is_global_zero:
            self.merge(trainer.world_size)
            written, skipped, errors = (int(v) for v in totals)
            print(
                f"segsvc predict: {written} masks written, {skipped} already there, {errors} unreadable "
                f"(listed in {self.outputs.root / 'errors.csv'}); class shares in {self.outputs.root / 'class_shares.csv'}",
                flush=True,
            )

    def merge(self, world_size: int) -> None:
        parts = self.outputs.root / PARTS
        rows: dict[str, list[str]] = {}
        for shard in sorted(parts.glob("class_shares-rank*.csv")):  # every run's shards: resumed runs add up
            rows.update((row[0], row) for row in csv.reader(shard.open(newline="")) if row)
        with (self.outputs.root / "class_shares.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "width", "height", *self.class_names])
            writer.writerows(rows[path] for path in sorted(rows))
        errors = []
        for rank in range(world_size):
            errors += list(csv.reader((parts / f"errors-rank{rank}.csv").open(newline="")))
        with (self.outputs.root / "errors.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "error"])
            writer.writerows(sorted(errors))


def load_any_model(model: str) -> nn.Module:
    """'default', a model folder (config.json + model.safetensors) or a training checkpoint (.ckpt)."""
    from segsvc.models.fusion import fuse_batchnorm

    if model == "default":
        return segsvc.load_default_model()
    path = Path(model)
    if path.is_dir():
        return segsvc.load_model(path)
    if path.is_file() and path.suffix == ".ckpt":
        from segsvc.training.module import load_checkpoint

        module = load_checkpoint(path)
        inference = module.model.eval().float()
        if module.hparams.architecture == "segsvc":
            fuse_batchnorm(inference)  # as `segsvc.load_model` does, so the masks equal an exported model's
        return inference.to(memory_format=torch.channels_last)
    raise FileNotFoundError(f"model not found: {model} (a model folder, 'default', or a .ckpt checkpoint)")


def build_parser():
    from pytorch_lightning.cli import LightningArgumentParser

    parser = LightningArgumentParser(prog="segsvc predict", description=__doc__, exit_on_error=False)
    parser.add_argument("--model", required=True, help="model folder, 'default' (the shipped model) or a .ckpt checkpoint")
    parser.add_argument("--input", required=True, help="folder of images, searched recursively")
    parser.add_argument("--output", required=True, help="folder for masks/, overlays/, class_shares.csv, errors.csv")
    parser.add_argument("--overlays", type=bool, default=False, help="also write overlays/ (true/false)")
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader processes decoding images, per rank")
    parser.add_lightning_class_args(pl.Trainer, "trainer")
    # no logger files for a prediction run; our own split instead of a DistributedSampler, which pads by repeating
    parser.set_defaults({"trainer.logger": False, "trainer.use_distributed_sampler": False, "trainer.enable_model_summary": False})
    return parser


def run_predict(argv: list[str]) -> None:
    """`segsvc predict --model M --input DIR --output OUT [--overlays true] [--trainer.devices 2 --trainer.strategy ddp]`."""
    from jsonargparse import ArgumentError

    parser = build_parser()
    try:
        config = parser.parse_args(argv)
        if config.trainer.use_distributed_sampler:
            raise ValueError("--trainer.use_distributed_sampler must stay false: it would repeat images to pad ranks")
        if not Path(config.input).is_dir():
            raise FileNotFoundError(f"input folder not found: {config.input}")
        model = load_any_model(config.model)
    except (ArgumentError, OSError, ValueError, RuntimeError, KeyError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        sys.stderr.write(f"segsvc predict: error: {message}\n")
        raise SystemExit(2) from None
    init = parser.instantiate_classes(config)
    outputs = Outputs(config.output, config.overlays)
    writer = MaskWriter(outputs, list(model.class_names), list(model.palette))
    trainer_args = dict(init.trainer)
    trainer = pl.Trainer(**{**trainer_args, "callbacks": [*(trainer_args.get("callbacks") or []), writer]})
    data = ImageFolderData(config.input, outputs, config.num_workers)
    trainer.predict(MaskPredictor(model), datamodule=data, return_predictions=False)
