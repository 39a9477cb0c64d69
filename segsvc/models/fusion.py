"""Fold each BatchNorm into the convolution before it, for inference.

In eval mode BatchNorm is a fixed per-channel affine map y = gamma * (x - mean) / sqrt(var + eps) + beta,
so conv-then-BN equals one convolution with scaled weights and a bias. Eager PyTorch does not do this on
its own and spends about as long in BatchNorm as in the convolutions of this model; ONNX Runtime folds
them while optimising its graph, so after this both backends run the same arithmetic.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every (Conv2d | ConvTranspose2d, BatchNorm2d) pair inside a Sequential; in place, eval mode.

    The fused model gives the same logits (to float rounding) but can no longer be trained or saved with
    `save_model`; fuse a copy when the original is still needed.
    """
    model.eval()
    for sequential in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(sequential) - 1):
            conv, bn = sequential[i], sequential[i + 1]
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                sequential[i] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
                sequential[i + 1] = nn.Identity()
    return model
