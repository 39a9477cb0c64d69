"""Score a model on a dataset split with the inference pipeline itself (predict_mask, full resolution)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from segsvc.data.datasets import SegmentationDataset, SegmentationFolder
from segsvc.evaluation.metrics import confusion_matrix, iou_per_class, pixel_accuracy
from segsvc.runtime.predict import Backend, predict_mask


def evaluate_dataset(
    model: nn.Module | Backend,
    dataset: SegmentationDataset,
    num_classes: int,
    ignore_index: int,
    reference: nn.Module | Backend | None = None,
) -> dict:
    """mIoU, per-class IoU, pixel accuracy and the confusion matrix (rows truth, columns prediction) over every
    pair, each at its own full size; with a `reference` model, also the share of pixels where both predict the
    same class ("agreement", per image)."""
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    agreement = []
    for index in range(len(dataset)):
        image, mask = dataset.load(index)
        prediction = predict_mask(model, image)
        confusion += confusion_matrix(torch.from_numpy(prediction).long(), torch.from_numpy(mask.astype(np.int64)), num_classes, ignore_index)
        if reference is not None:
            agreement.append(float((prediction == predict_mask(reference, image)).mean()))
    iou = iou_per_class(confusion)
    result = {
        "images": len(dataset),
        "miou": float(iou.nanmean()),
        "pixel_accuracy": pixel_accuracy(confusion),
        "iou": iou.tolist(),
        "confusion": confusion.tolist(),
    }
    if reference is not None:
        result["agreement"] = agreement
    return result


def evaluate_folder(
    model: nn.Module | Backend,
    image_dir: str | Path,
    mask_dir: str | Path,
    num_classes: int,
    ignore_index: int,
    reference: nn.Module | Backend | None = None,
) -> dict:
    """`evaluate_dataset` over a folder of images and a folder of same-named class-index masks (CamVid's layout)."""
    dataset = SegmentationFolder(image_dir, mask_dir, num_classes, ignore_index)
    return evaluate_dataset(model, dataset, num_classes, ignore_index, reference)
