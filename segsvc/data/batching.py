"""Batches of images of different sizes, for evaluation at full resolution.

Validation and test images keep their own size (padded right/bottom to a multiple of 32), so a batch of a
folder with mixed sizes cannot be stacked as it is. `PadCollate` pads each batch to its largest member,
image with 0 and mask with the ignore index, and keeps each member's own size: the evaluation step runs
each size apart (`same_size_groups`), so every image is seen exactly as at batch size 1 and the metrics
are those of batch size 1.
"""

from __future__ import annotations

import torch


class PadCollate:
    """[(image (3, H, W), mask (H, W)), ...] -> images (N, 3, Hmax, Wmax), masks (N, Hmax, Wmax), sizes (N, 2)."""

    def __init__(self, ignore_index: int):
        self.ignore_index = ignore_index

    def __call__(self, samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sizes = torch.tensor([list(image.shape[-2:]) for image, _ in samples], dtype=torch.int64)
        height, width = (int(v) for v in sizes.max(0).values)
        first_image, first_mask = samples[0]
        images = first_image.new_zeros((len(samples), first_image.shape[0], height, width))
        masks = first_mask.new_full((len(samples), height, width), self.ignore_index)
        for index, (image, mask) in enumerate(samples):
            images[index, :, : image.shape[-2], : image.shape[-1]] = image
            masks[index, : mask.shape[-2], : mask.shape[-1]] = mask
        return images, masks, sizes


def same_size_groups(sizes: torch.Tensor) -> list[tuple[torch.Tensor, int, int]]:
    """(member indices, height, width) for each distinct size in a batch's `sizes` (N, 2), in first-seen order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (height, width) in enumerate(sizes.tolist()):
        groups.setdefault((height, width), []).append(index)
    return [(torch.tensor(members), height, width) for (height, width), members in groups.items()]
