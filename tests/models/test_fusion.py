from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

import segsvc
from segsvc.models.fusion import fuse_batchnorm
from segsvc.models.serialization import DEFAULT_MODEL_DIR


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_fusion_removes_every_batchnorm_and_keeps_the_logits():
    torch.manual_seed(0)
    model = segsvc.build_model(num_classes=5)
    for m in model.modules():  # statistics far from the identity, so a wrong fold would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
        batchnorms = count(model, nn.BatchNorm2d)
        fused = fuse_batchnorm(model)
        assert batchnorms == 63 and count(fused, nn.BatchNorm2d) == 0
        assert count(fused, nn.ConvTranspose2d) == 5  # the decoder keeps its transposed convolutions
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-4)


def test_default_model_loads_fused_and_masks_match_the_unfused_layers(camvid_mini):
    fused = segsvc.load_default_model()
    plain = segsvc.load_model(DEFAULT_MODEL_DIR, fuse=False)
    assert count(fused, nn.BatchNorm2d) == 0 and count(plain, nn.BatchNorm2d) > 0
    agree = [
        (segsvc.predict_mask(fused, image) == segsvc.predict_mask(plain, image)).mean()
        for image in (np.asarray(Image.open(p).convert("RGB")) for p in sorted((camvid_mini / "test").iterdir()))
    ]
    assert min(agree) >= 0.9999, agree
