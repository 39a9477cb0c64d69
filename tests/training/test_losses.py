"""OHEM cross-entropy and the auxiliary head (`segsvc.training.losses`), called directly."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from segsvc.training.losses import ohem_cross_entropy
from segsvc.training.module import SegmentationModule


def test_ohem_with_threshold_one_is_plain_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    masks = torch.randint(0, 4, (2, 8, 8))
    masks[0, :3] = 9
    weight = torch.tensor([1.0, 2.0, 0.5, 3.0])
    # every valid pixel's true-class probability is under 1: all count, as cross_entropy counts them
    expected = F.cross_entropy(logits, masks, weight=weight, ignore_index=9)
    assert torch.allclose(ohem_cross_entropy(logits, masks, weight, 9, threshold=1.0), expected)


def test_ohem_keeps_the_hard_pixels_and_at_least_min_kept():
    masks = torch.zeros(1, 10, 10, dtype=torch.long)
    logits = torch.zeros(1, 2, 10, 10)
    logits[0, 0] = 10.0  # every pixel confidently right...
    logits[0, 0, 0, :5] = -10.0  # ...but five, confidently wrong
    logits.requires_grad_(True)
    loss = ohem_cross_entropy(logits, masks, None, 255, threshold=0.7, min_kept=0.01)
    assert abs(loss.item() - 10.0) < 1e-3  # the mean over the five wrong pixels only (logit 0 against -10)
    loss.backward()
    touched = logits.grad.abs().sum(1)[0] > 0
    assert int(touched.sum()) == 5 and bool(touched[0, :5].all())
    # min_kept: a fifth of the pixels always count, the hardest first
    easy = ohem_cross_entropy(logits.detach(), masks, None, 255, threshold=0.7, min_kept=0.2)
    assert 0 < easy.item() < loss.item()


def test_ohem_with_nothing_valid_is_zero_with_a_gradient():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = ohem_cross_entropy(logits, torch.full((1, 4, 4), 255), None, 255)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_auxiliary_head_trains_the_encoder_and_stays_out_of_the_model():
    module = SegmentationModule(num_classes=3, loss="ohem", aux_weight=0.4)
    module.log = lambda *args, **kwargs: None  # no trainer attached
    images = torch.randn(2, 3, 64, 64)
    masks = torch.randint(0, 3, (2, 64, 64))
    module.training_step((images, masks), 0).backward()
    assert all(p.grad is not None for p in module.aux_head.parameters())
    assert all(p.grad is not None for p in module.model.parameters())
    # the exported network is `module.model`: no auxiliary weights in it
    assert not any("aux" in key for key in module.model.state_dict())
    plain = SegmentationModule(num_classes=3)
    assert module.model.state_dict().keys() == plain.model.state_dict().keys()


def test_weighted_ohem_is_cross_entropy_over_the_pixels_softmax_calls_hard():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 16, 16) * 3
    masks = torch.randint(0, 5, (2, 16, 16))
    masks[1, :4] = 9
    weight = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5])
    probability = logits.softmax(1).gather(1, masks.clamp(max=4).unsqueeze(1)).squeeze(1)
    hard = (masks != 9) & (probability <= 0.7)  # min_kept 0.01 keeps fewer pixels than the threshold does
    assert 0 < int(hard.sum()) < int((masks != 9).sum())
    expected = F.cross_entropy(logits, torch.where(hard, masks, 9), weight=weight, ignore_index=9)
    assert torch.allclose(ohem_cross_entropy(logits, masks, weight, 9, threshold=0.7, min_kept=0.01), expected)
