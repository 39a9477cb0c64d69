"""Callbacks: validation overlays and epoch timing.

ValidationOverlays: a picture per validation epoch (image | ground truth overlay | prediction overlay, for a
few val images, each panel at most `max_width` pixels wide), written as `overlays/epochNNN.png` beside the
logs and as the image `val/overlays` in TensorBoard.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger

from segsvc.io.visualize import overlay
from segsvc.runtime.predict import predict_mask


class ValidationOverlays(pl.Callback):
    def __init__(self, num_images: int = 3, max_width: int = 640):
        self.num_images = num_images
        self.max_width = max_width  # per panel: a 2000-pixel aerial tile would make a 100 MB picture per epoch

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.datamodule is None:
            return
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        dataset = trainer.datamodule.dataset("val")
        model = pl_module.model
        rows = []
        for index in np.linspace(0, len(dataset) - 1, min(self.num_images, len(dataset))).astype(int):
            image, mask = dataset.load(int(index))
            prediction = predict_mask(model, image)
            row = np.concatenate([image, overlay(image, mask, model.palette), overlay(image, prediction, model.palette)], 1)
            rows.append(shrink(row, 3 * self.max_width))
        width = max(row.shape[1] for row in rows)  # images of mixed sizes: rows padded black on the right
        picture = np.concatenate([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows], 0)
        out = log_dir / "overlays" / f"epoch{trainer.current_epoch:03d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(out)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/overlays", picture, trainer.global_step, dataformats="HWC")


def shrink(picture: np.ndarray, max_width: int) -> np.ndarray:
    """The picture scaled down (area-averaged) to at most `max_width` pixels wide; narrower ones as they are."""
    height, width = picture.shape[:2]
    if width <= max_width:
        return picture
    size = (max_width, max(1, round(height * max_width / width)))
    return np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BOX))


class EpochTimer(pl.Callback):
    """Logs each epoch's training time and images/s (`time/epoch_s`, `time/images_per_s`), validation excluded;
    at the end of fit, prints how long it took and the best checkpoint."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_start, self.first_epoch = time.perf_counter(), trainer.current_epoch

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        minutes, seconds = divmod(round(time.perf_counter() - self.fit_start), 60)
        epochs = trainer.current_epoch - self.first_epoch
        stopped = f", stopped before max_epochs {trainer.max_epochs}" if trainer.max_epochs and trainer.current_epoch < trainer.max_epochs else ""
        print(f"segsvc: trained {epochs} epoch(s) (to epoch {trainer.current_epoch}) in {minutes} min {seconds:02d} s, validation included{stopped}")
        for callback in trainer.checkpoint_callbacks:
            if callback.monitor and callback.best_model_path:
                print(f"segsvc: best checkpoint {callback.best_model_path} ({callback.monitor} {float(callback.best_model_score):.4f})")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = self.end = time.perf_counter()
        self.images = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        self.images += len(batch[0])
        self.end = time.perf_counter()  # validation runs before on_train_epoch_end: stop the clock here

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = max(self.end - self.start, 1e-9)
        pl_module.log("time/epoch_s", seconds)
        pl_module.log("time/images_per_s", self.images * trainer.world_size / seconds)
