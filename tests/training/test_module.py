"""The LightningModule's loss options and optimiser groups, called directly."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer
from torch.utils.data import DataLoader, TensorDataset

from segsvc.training.module import SegmentationModule


class FakeTrainer:
    """What configure_optimizers reads of a Trainer."""

    def __init__(self, steps: int, callbacks: list | None = None):
        self.estimated_stepping_batches, self.callbacks = steps, callbacks or []


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

    module._trainer = FakeTrainer(100)
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


def test_frozen_stages_keep_their_weights_and_batchnorm_statistics(tmp_path):
    module = SegmentationModule(num_classes=3, ignore_index=9, frozen_stages=2)
    frozen = module.frozen_layers()
    assert len(frozen) == module.model.encoder.taps[1] + 1  # up to the H/4 stage
    before = {k: v.clone() for k, v in module.state_dict().items()}
    images, masks = torch.randn(4, 3, 64, 64), torch.randint(0, 3, (4, 64, 64))
    trainer = pl.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # a real fit: Lightning restores each module's mode, it never calls train() on the module
    trainer.fit(module, DataLoader(TensorDataset(images, masks), batch_size=2))
    after = module.state_dict()
    frozen_keys = {f"model.encoder.features.{i}." for i in range(len(frozen))}
    for key, value in before.items():
        changed = not torch.equal(value, after[key])
        if any(key.startswith(prefix) for prefix in frozen_keys):
            assert not changed, key
        elif key.endswith(("running_mean", "weight")) and "encoder.features.17" in key:
            assert changed, key
    module.train()
    assert not any(m.training for layer in frozen for m in layer.modules())
    assert module.model.encoder.features[len(frozen)].training
    with pytest.raises(ValueError, match="frozen_stages must be 0 to 5"):
        SegmentationModule(num_classes=3, frozen_stages=6)


def test_the_schedule_reaches_zero_at_max_time_when_that_comes_before_max_epochs():
    module = SegmentationModule(num_classes=3, lr=1e-3, warmup_fraction=0.0)
    timer = Timer(duration=timedelta(seconds=100))
    module._trainer = FakeTrainer(1000, [timer])
    schedule = module.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert schedule(0) == pytest.approx(1.0)
    timer.load_state_dict({"time_elapsed": {"train": 50.0}})  # half the time gone, 1% of the steps
    assert schedule(10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert schedule(900) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))  # the steps lead now
    timer.load_state_dict({"time_elapsed": {"train": 100.0}})
    assert schedule(10) == pytest.approx(0.0)


def test_the_default_recipe_is_ohem_with_the_auxiliary_head_and_the_peer_gets_no_head():
    ours = SegmentationModule(num_classes=3)
    assert (ours.hparams.loss, ours.hparams.aux_weight) == ("ohem", 0.4) and ours.aux_head is not None
    peer = SegmentationModule(num_classes=3, architecture="smp_linknet")
    assert peer.hparams.aux_weight == 0.0 and peer.aux_head is None
    for setting in ({"aux_weight": 0.4}, {"frozen_stages": 1}):
        with pytest.raises(ValueError, match="need architecture 'segsvc'"):
            SegmentationModule(num_classes=3, architecture="smp_linknet", **setting)
