"""Training-only losses and heads: online hard example mining (OHEM) cross-entropy and an auxiliary head.

OHEM keeps the pixels the model gets wrong or is unsure of, as PIDNet's and DDRNet's `OhemCrossEntropy`
(Shrivastava et al. 2016, for segmentation as in Wu et al. 2016): a pixel counts when the probability of
its true class is under `threshold`, and at least `min_kept` of the valid pixels always count (the hardest).

The auxiliary head reads one encoder stage and predicts the mask from it, so the encoder gets a gradient of
its own (PIDNet, DDRNet and STDC weigh it 0.4). It exists only while training: the exported model folder
holds `SegmentationModule.model`, not this head, so the served network is the same.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

AUX_WEIGHT = 0.4  # the auxiliary loss's weight by default, as PIDNet's, DDRNet's and STDC's recipes


def ohem_cross_entropy(
    logits: torch.Tensor,
    masks: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    threshold: float = 0.7,
    min_kept: float = 0.1,
) -> torch.Tensor:
    """Cross-entropy over the hard pixels of logits (N, K, H, W) and masks (N, H, W), a mean weighted by
    class as `F.cross_entropy(weight=...)` takes it.

    Args:
        threshold: A pixel is hard when its true class's probability is below this.
        min_kept: The hardest share of the valid pixels always kept, whatever their probability.
    """
    valid = masks != ignore_index
    target = torch.where(valid, masks, torch.zeros_like(masks))
    # -log p(true class) of every pixel: one log-softmax gives the loss and (exp of its negative) the probability
    nll = F.cross_entropy(logits, target, reduction="none")
    if not bool(valid.any()):
        return nll.sum() * 0.0  # nothing to learn from: a zero that still has a graph
    with torch.no_grad():
        probability = torch.exp(-nll.detach())
        valid_probability = probability[valid]
        kept = min(max(int(min_kept * valid_probability.numel()), 1), valid_probability.numel())
        # the kept-th smallest probability: pixels up to it are the `min_kept` hardest
        cutoff = max(float(valid_probability.kthvalue(kept).values), threshold)
        hard = valid & (probability <= cutoff)
    if weight is None:
        return nll[hard].mean()
    pixel_weight = weight[target[hard]]
    return (nll[hard] * pixel_weight).sum() / pixel_weight.sum()  # as cross_entropy's weighted mean normalises


class AuxiliaryHead(nn.Module):
    """Logits (N, K, H, W) from one encoder stage (N, C, H/r, W/r): 3x3 conv, BN, ReLU, 1x1 conv, upsampled."""

    def __init__(self, in_channels: int, num_classes: int, hidden_channels: int = 64):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, num_classes, 1),
        )

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(self.block(features), size=size, mode="bilinear", align_corners=False)
