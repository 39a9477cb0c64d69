"""The LightningModule: a thin shell over `segsvc.build_model` with loss, metrics and optimiser."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer
from torch import nn

from segsvc import build_model
from segsvc.data.batching import same_size_groups
from segsvc.data.datasets import enet_class_weights
from segsvc.data.recipe import choose_class_weighting
from segsvc.evaluation.metrics import confusion_matrix, iou_per_class, pixel_accuracy
from segsvc.training.losses import AUX_WEIGHT, AuxiliaryHead, ohem_cross_entropy


class ModelOptionError(ValueError):
    """A model option that cannot work, naming it and what it accepts: `segsvc fit` prints it in one line."""


class SegmentationModule(pl.LightningModule):
    """The segmentation network with its loss, optimizer, schedule and metrics (mIoU from a confusion matrix).

    Args:
        num_classes: Classes the model predicts; linked from the data module (not set in a YAML).
        class_names: Their names, linked from the data module; carried into exported model folders.
        palette: An RGB colour per class for overlays and masks, linked from the data module.
        ignore_index: The target value the loss and metrics skip, linked from the data module.
        encoder_weights: Where the MobileNetV2 encoder starts: "imagenet" (torchvision's weights, downloaded
            once and cached), a local torchvision-layout file, or null / "none" to train from scratch.
        lr: Peak learning rate of AdamW (linear warm-up, then cosine decay to 0, per optimizer step; it reaches 0
            at max_epochs, or at max_time when that comes first).
        encoder_lr_scale: The encoder's learning rate as a multiple of `lr` (below 1 keeps ImageNet features).
        weight_decay: AdamW weight decay.
        warmup_fraction: Share of the run spent warming up.
        loss: "ohem" (the default: cross-entropy over the hard pixels only, true-class probability under
            `ohem_threshold` and at least the hardest `ohem_min_kept` share of them; `segsvc.training.losses`),
            "ce" (cross-entropy) or "ce+dice" (+ segmentation_models_pytorch's multiclass Dice).
        ohem_threshold: OHEM: a pixel is hard when its true class's probability is below this.
        ohem_min_kept: OHEM: the hardest share of the valid pixels always kept.
        aux_weight: Weight of an auxiliary loss from a head on the encoder's H/16 stage (0: none; None: 0.4 for
            our architecture, 0 for the peer). Training only: the head is not part of the exported model.
            OHEM with the 0.4 head: CamVid test mIoU 0.626 against 0.604 with "ce" and none (docs/training.md).
        frozen_stages: Encoder stages that keep their starting weights and BatchNorm statistics, from the
            input on (as mmsegmentation's `frozen_stages`): 1 freezes up to the H/2 stage, 2 up to H/4, ...
            Their backward pass is skipped (2: a CPU step in 0.72x the time, an epoch in 0.87x).
        class_weighting: "enet" weighs rare classes more (1 / ln(1.02 + share)); "none"; "auto" chooses from
            the data check (enet when the most frequent class has 10x the pixels of the rarest).
        channels_last: Train in channels_last memory format (faster on some GPUs and CPUs).
        compile: Run the model under torch.compile.
        architecture: "segsvc" (ours) or "smp_linknet" (the peer, for comparisons).
        init_model: Warm start from a model folder, or "default" for the shipped model (its weights, all layers).
    """

    def __init__(
        self,
        num_classes: int = 11,
        class_names: list[str] | None = None,
        palette: list[tuple[int, int, int]] | None = None,
        ignore_index: int = 255,
        encoder_weights: str | None = None,
        lr: float = 2e-3,
        encoder_lr_scale: float = 1.0,
        weight_decay: float = 1e-4,
        warmup_fraction: float = 0.03,
        loss: Literal["ce", "ce+dice", "ohem"] = "ohem",
        ohem_threshold: float = 0.7,
        ohem_min_kept: float = 0.1,
        aux_weight: float | None = None,
        frozen_stages: int = 0,
        class_weighting: Literal["auto", "none", "enet"] = "auto",
        channels_last: bool = False,
        compile: bool = False,
        architecture: Literal["segsvc", "smp_linknet"] = "segsvc",
        init_model: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        # "null" or "none" trains from scratch; a warm start (init_model) replaces the encoder anyway.
        if init_model is not None or str(encoder_weights).lower() in ("none", "null"):
            encoder_weights = None
        self.model = build_model(num_classes, encoder_weights) if architecture == "segsvc" else build_linknet(num_classes, encoder_weights)
        self.model.class_names = list(class_names) if class_names else self.model.class_names
        self.model.palette = [tuple(c) for c in palette] if palette else self.model.palette
        self.model.ignore_index = ignore_index
        if init_model is not None:  # warm start: a model folder, or "default" for the shipped one
            self.model.load_state_dict(load_init_state(init_model, architecture), strict=True)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward_model = torch.compile(self.model) if compile else self.model
        if aux_weight is None:
            aux_weight = self.hparams.aux_weight = AUX_WEIGHT if architecture == "segsvc" else 0.0
        if aux_weight < 0:
            raise ModelOptionError(f"aux_weight must be 0 (no auxiliary head) or more, got {aux_weight}")
        if architecture != "segsvc" and (aux_weight > 0 or frozen_stages > 0):
            raise ModelOptionError(f"aux_weight and frozen_stages need architecture 'segsvc' (our encoder's stages), not {architecture!r}: set them to 0")
        stages = len(getattr(self.model.encoder, "taps", []))
        if not 0 <= frozen_stages <= stages:
            raise ModelOptionError(f"frozen_stages must be 0 to {stages} (the encoder's stages), got {frozen_stages}")
        if frozen_stages:  # frozen layers are in eval mode on purpose: Lightning's warning about them is not news
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
        for layer in self.frozen_layers():  # eval: Lightning keeps each module's mode, it never calls train()
            layer.requires_grad_(False).eval()
        self.register_buffer("class_weights", torch.ones(num_classes), persistent=True)
        # the H/16 stage (96 channels): deep enough to carry classes, fine enough to place them
        self.aux_head = AuxiliaryHead(self.model.encoder.out_channels[-2], num_classes) if aux_weight > 0 else None
        self.dice = None
        if loss == "ce+dice":
            from segmentation_models_pytorch.losses import DiceLoss

            self.dice = DiceLoss("multiclass", ignore_index=ignore_index)
        self.confusion: dict[str, torch.Tensor] = {}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage != "fit" or datamodule is None:
            return
        if self.hparams.class_weighting == "auto":  # the CLI decides before fit; here for runs without it
            choice = choose_class_weighting(datamodule.train_class_counts().tolist(), list(self.model.class_names))
            print(f"segsvc: recipe: {choice}")
            self.hparams.class_weighting = choice.value
        if self.hparams.class_weighting == "enet":
            weights = enet_class_weights(datamodule.train_class_counts())
            self.class_weights.copy_(torch.from_numpy(weights))

    def frozen_layers(self) -> list[nn.Module]:
        """The encoder layers up to and including its `frozen_stages`-th stage's output."""
        stages = self.hparams.frozen_stages
        if stages == 0:
            return []
        return list(self.model.encoder.features[: self.model.encoder.taps[stages - 1] + 1])

    def train(self, mode: bool = True) -> SegmentationModule:
        super().train(mode)
        for layer in self.frozen_layers():  # frozen BatchNorm keeps its statistics
            layer.train(False)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.forward_model(images)

    def compute_loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        hparams = self.hparams
        if hparams.loss == "ohem":
            return ohem_cross_entropy(
                logits.float(), masks, self.class_weights, hparams.ignore_index, hparams.ohem_threshold, hparams.ohem_min_kept
            )
        loss = nn.functional.cross_entropy(logits.float(), masks, weight=self.class_weights, ignore_index=hparams.ignore_index)
        if self.dice is not None:
            loss = loss + self.dice(logits.float(), masks)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, masks = batch
        if self.aux_head is None:
            loss = self.compute_loss(self(images), masks)
        else:  # the network's parts in turn, to read the encoder stage the auxiliary head learns from
            if self.hparams.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            skips = self.model.encoder(images)
            logits = self.model.head(self.model.decoder(skips))
            aux_logits = self.aux_head(skips[-2], tuple(images.shape[-2:]))
            aux_loss = self.compute_loss(aux_logits, masks)
            self.log("train/aux_loss", aux_loss, on_step=False, on_epoch=True, batch_size=len(images))
            loss = self.compute_loss(logits, masks) + self.hparams.aux_weight * aux_loss
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(images))
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, ...], stage: str) -> None:
        images, masks = batch[0], batch[1]
        sizes = batch[2] if len(batch) > 2 else torch.tensor([list(images.shape[-2:])] * len(images))
        loss = 0.0
        # A padded batch of mixed sizes: each size runs apart, cropped to itself, as it would at batch size 1.
        for members, height, width in same_size_groups(sizes):
            if len(members) == len(images):
                group_images, group_masks = images[..., :height, :width], masks[..., :height, :width]
            else:
                members = members.to(images.device)
                group_images, group_masks = images[members, :, :height, :width], masks[members, :height, :width]
            logits = self(group_images)
            loss = loss + self.compute_loss(logits, group_masks) * len(members) / len(images)
            confusion = confusion_matrix(logits.argmax(1), group_masks, self.hparams.num_classes, self.hparams.ignore_index)
            self.confusion[stage] = self.confusion.get(stage, 0) + confusion
        self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(images))

    def _log_metrics(self, stage: str) -> None:
        confusion = self.confusion.pop(stage, None)
        if confusion is None:
            return
        confusion = self.trainer.strategy.reduce(confusion, reduce_op="sum")  # sum over DDP ranks
        confusion = confusion.cpu()
        iou = iou_per_class(confusion)
        self.log(f"{stage}/miou", float(iou.nanmean()), prog_bar=True)
        self.log(f"{stage}/pixel_acc", pixel_accuracy(confusion))
        for name, value in zip(self.model.class_names, iou.tolist()):
            if not math.isnan(value):
                self.log(f"{stage}/iou_{name}", value)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(images).argmax(1).to(torch.uint8)

    def configure_optimizers(self):
        encoder = list(self.model.encoder.parameters())
        encoder_ids = {id(p) for p in encoder}
        rest = [p for p in self.model.parameters() if id(p) not in encoder_ids]
        lr = self.hparams.lr
        optimizer = torch.optim.AdamW(
            [{"params": encoder, "lr": lr * self.hparams.encoder_lr_scale}, {"params": rest, "lr": lr}],
            weight_decay=self.hparams.weight_decay,
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        warmup = self.hparams.warmup_fraction

        def schedule(step: int) -> float:  # linear warm-up, then cosine to zero
            done = step / total
            if timer is not None and timer.time_remaining() is not None:  # max_time may end the run first
                elapsed = timer.time_elapsed()
                done = max(done, elapsed / max(elapsed + timer.time_remaining(), 1e-9))
            if done < warmup:
                return max(done, 1 / total) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (done - warmup) / max(1 - warmup, 1e-9))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class CheckpointError(ValueError):
    """A file that is not a checkpoint of `segsvc fit`: `segsvc export` and `segsvc predict` print it in one line."""


def load_checkpoint(path: str | Path) -> SegmentationModule:
    """The module a `segsvc fit` checkpoint holds, on the CPU, for export or prediction: no weights fetched.

    Raises:
        CheckpointError: naming the file, when it is not one (truncated, another program's pickle, a text file).
    """
    try:
        return SegmentationModule.load_from_checkpoint(path, map_location="cpu", encoder_weights=None, init_model=None, compile=False)
    except Exception as error:  # torch.load and Lightning raise many kinds here, with advice that does not apply
        raise CheckpointError(f"{path} is not a checkpoint of segsvc fit: it could not be read ({type(error).__name__})") from None


def load_init_state(init_model: str, architecture: str) -> dict[str, torch.Tensor]:
    """The unfused float32 weights of a segsvc model folder (or the shipped default) to start training from."""
    from segsvc.models.serialization import DEFAULT_MODEL_DIR, load_model

    if architecture != "segsvc":
        raise ModelOptionError(f"init_model needs architecture 'segsvc', not {architecture!r}")
    model = load_model(DEFAULT_MODEL_DIR if init_model == "default" else init_model, fuse=False)
    return {k: v.float() for k, v in model.state_dict().items()}


def build_linknet(num_classes: int, encoder_weights: str | None) -> nn.Module:
    """The peer we compare against: smp Linknet("mobilenet_v2"), encoder from the same ImageNet weights."""
    import segmentation_models_pytorch as smp

    from segsvc.models.encoder import read_imagenet_state_dict

    model = smp.Linknet("mobilenet_v2", encoder_weights=None, classes=num_classes)
    if encoder_weights is not None:
        state = read_imagenet_state_dict(encoder_weights)
        model.encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")}, strict=True)
    model.class_names = [str(i) for i in range(num_classes)]
    model.palette = []
    model.ignore_index = None
    return model
