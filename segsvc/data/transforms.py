"""Augmentation for training (albumentations) and the evaluation transform, which is inference's preprocessing;
both give (image, mask) tensors."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations asks PyPI for a newer version at import
import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from segsvc.data.datasets import LARGE_IMAGE_PIXELS  # noqa: E402
from segsvc.models.inputs import normalize, pad_to_multiple  # noqa: E402


class TrainTransform:
    """Random scale + crop, flip, colour jitter (masks follow with nearest neighbour), then normalise.

    The same random scale and crop either way: a large image gives up only the window the crop needs at the
    drawn scale (`scaled_window`), so its cost is the crop's, not the photo's: for a 512x512 crop of a 12 MP
    photo (3024x4032), 0.014 s a sample against 0.22 s rescaling it whole (jitter and normalising included)."""

    def __init__(self, crop_size: tuple[int, int], scale_range: tuple[float, float], ignore_index: int):
        height, width = crop_size
        self.crop_size, self.scale_range = (height, width), scale_range
        self.rescale = A.RandomScale(scale_limit=(scale_range[0] - 1, scale_range[1] - 1), interpolation=cv2.INTER_LINEAR,
                                     mask_interpolation=cv2.INTER_NEAREST, p=1.0)  # fmt: skip
        self.crop = A.Compose(
            [
                A.PadIfNeeded(height, width, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index),
                A.RandomCrop(height, width),
                A.HorizontalFlip(p=0.5),
                A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.02, p=0.8),
            ]
        )
        self.rng = np.random.default_rng()

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if image.shape[0] * image.shape[1] > LARGE_IMAGE_PIXELS:
            image, mask = self.scaled_window(image, mask)
        else:
            rescaled = self.rescale(image=image, mask=mask)
            image, mask = rescaled["image"], rescaled["mask"]
        out = self.crop(image=image, mask=mask)
        return to_tensors(normalize(out["image"]), out["mask"])

    def scaled_window(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A random window of the image, of the crop's size divided by a random scale, rescaled by that scale."""
        scale = self.rng.uniform(*self.scale_range)
        height, width = (min(int(np.ceil(side / scale)), full) for side, full in zip(self.crop_size, image.shape[:2]))
        top = int(self.rng.integers(0, image.shape[0] - height + 1))
        left = int(self.rng.integers(0, image.shape[1] - width + 1))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))  # cv2: (width, height)
        window = np.ascontiguousarray(image[top : top + height, left : left + width])
        window_mask = np.ascontiguousarray(mask[top : top + height, left : left + width])
        return cv2.resize(window, size, interpolation=cv2.INTER_LINEAR), cv2.resize(window_mask, size, interpolation=cv2.INTER_NEAREST)


class EvalTransform:
    """The inference preprocessing: normalise, pad right/bottom to a multiple of 32 (mask with ignore)."""

    def __init__(self, ignore_index: int):
        self.ignore_index = ignore_index

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensors(pad_to_multiple(normalize(image)), pad_to_multiple(mask, value=self.ignore_index))


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    image_tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return image_tensor, torch.from_numpy(np.ascontiguousarray(mask)).long()
