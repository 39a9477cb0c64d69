"""Score a model on a folder split with the inference pipeline itself (predict_mask, full resolution)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from segsvc.data import SegmentationFolder
from segsvc.metrics import confusion_matrix, iou_per_class, pixel_accuracy
from segsvc.predict import Backend, predict_mask


def evaluate_folder(
    model: nn.Module | Backend, image_dir: str | Path, mask_dir: str | Path, num_classes: int, ignore_index: int
) -> dict:
    """mIoU, per-class IoU and pixel accuracy over every image/mask pair, each at its own full size."""
    dataset = SegmentationFolder(image_dir, mask_dir, num_classes, ignore_index)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for index in range(len(dataset)):
        image, mask = dataset.load(index)
        prediction = predict_mask(model, image)
        confusion += confusion_matrix(torch.from_numpy(prediction).long(), torch.from_numpy(mask.astype(np.int64)), num_classes, ignore_index)
    iou = iou_per_class(confusion)
    return {
        "images": len(dataset),
        "miou": float(iou.nanmean()),
        "pixel_accuracy": pixel_accuracy(confusion),
        "iou": iou.tolist(),
    }
