"""The LightningModule's loss options and optimiser groups, called directly."""

from __future__ import annotations

import torch

from segsvc.training.module import SegmentationModule


def test_ce_plus_dice_ignores_void_and_backpropagates():
    module = SegmentationModule(num_classes=3, ignore_index=9, loss="ce+dice")
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    masks = torch.randint(0, 3, (2, 8, 8))
    masks[:, :2] = 9
    loss = module.compute_loss(logits, masks)
    plain = SegmentationModule(num_classes=3, ignore_index=9, loss="ce").compute_loss(logits, masks)
    assert loss.item() > plain.item() > 0
    loss.backward()
    assert logits.grad[:, :, :2].abs().sum() < logits.grad[:, :, 2:].abs().sum()


def test_encoder_learning_rate_scale():
    module = SegmentationModule(num_classes=3, lr=1e-3, encoder_lr_scale=0.1)

    class Trainer:
        estimated_stepping_batches = 100

    module._trainer = Trainer()
    optimizer = module.configure_optimizers()["optimizer"]
    encoder_group, rest_group = optimizer.param_groups
    assert abs(encoder_group["lr"] / rest_group["lr"] - 0.1) < 1e-9
    assert len(encoder_group["params"]) == len(list(module.model.encoder.parameters()))


def test_init_model_starts_from_a_model_folder_weights():
    from segsvc.models.serialization import DEFAULT_MODEL_DIR, load_model

    module = SegmentationModule(num_classes=11, init_model="default")
    shipped = load_model(DEFAULT_MODEL_DIR, fuse=False).state_dict()
    for key, value in module.model.state_dict().items():
        assert torch.equal(value, shipped[key].float()), key


def test_init_model_of_another_class_count_is_refused():
    import pytest

    with pytest.raises(RuntimeError, match="size mismatch"):
        SegmentationModule(num_classes=3, init_model="default")
