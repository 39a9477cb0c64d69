"""Augmentation for training (albumentations) and the evaluation transform, which is inference's preprocessing;
both give (image, mask) tensors."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations asks PyPI for a newer version at import
import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from segsvc.runtime.predict import normalize, pad_to_multiple  # noqa: E402


class TrainTransform:
    """Random scale + crop, flip, colour jitter (masks follow with nearest neighbour), then normalise."""

    def __init__(self, crop_size: tuple[int, int], scale_range: tuple[float, float], ignore_index: int):
        height, width = crop_size
        self.augment = A.Compose(
            [
                A.RandomScale(scale_limit=(scale_range[0] - 1, scale_range[1] - 1), interpolation=cv2.INTER_LINEAR,
                              mask_interpolation=cv2.INTER_NEAREST, p=1.0),
                A.PadIfNeeded(height, width, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index),
                A.RandomCrop(height, width),
                A.HorizontalFlip(p=0.5),
                A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.02, p=0.8),
            ]
        )  # fmt: skip

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.augment(image=image, mask=mask)
        return to_tensors(normalize(out["image"]), out["mask"])


class EvalTransform:
    """The inference preprocessing: normalise, pad right/bottom to a multiple of 32 (mask with ignore)."""

    def __init__(self, ignore_index: int):
        self.ignore_index = ignore_index

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensors(pad_to_multiple(normalize(image)), pad_to_multiple(mask, value=self.ignore_index))


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    image_tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return image_tensor, torch.from_numpy(np.ascontiguousarray(mask)).long()
