"""Before `fit`: the data check, then the settings the YAML left unset, chosen from it (`segsvc.data.recipe`).

The choices are printed with their reasons and written to `<default_root_dir>/recipe.txt`; each names
the YAML key that overrides it. `segsvc data check` prints the same recipe without training.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from segsvc.data.recipe import Choice, choose_checkpoint_interval, choose_class_weighting, choose_schedule, format_recipe


def needs_recipe(model: pl.LightningModule, datamodule, auto_schedule: bool) -> bool:
    """Whether the YAML left anything for the data to choose."""
    return model.hparams.get("class_weighting") == "auto" or auto_schedule or getattr(datamodule, "crop_size", 0) is None


def choose_recipe(class_weighting: str, datamodule, auto_schedule: bool, auto_validation: bool) -> list[Choice]:
    """The choices for what is unset (`class_weighting` is the model's setting), from the data check's train
    statistics (run `check_data` first)."""
    choices = list(datamodule.choices)  # the crop, chosen by the data module during its check
    if class_weighting == "auto":
        choices.append(choose_class_weighting(datamodule.stats["train"].class_pixels, datamodule.class_names))
    if auto_schedule:
        train_images = len(datamodule.dataset("train"))
        epochs, every = choose_schedule(train_images, datamodule.batch_size)
        choices += [epochs, every] if auto_validation else [epochs]
        saves = choose_checkpoint_interval(train_images, datamodule.batch_size)
        choices += [saves] if saves.value > 1 else []
    return choices


def apply_recipe(trainer: pl.Trainer, model: pl.LightningModule, datamodule, auto_schedule: bool, auto_validation: bool) -> list[Choice]:
    """Run fit's data check now and set what is still unset: crop size, class weighting, schedule."""
    hparams = model.hparams
    scratch = str(hparams.get("encoder_weights")).lower() in ("none", "null")  # null, or the string "none"
    if scratch and hparams.get("init_model") is None and rank_zero_only.rank == 0:
        print("segsvc: warning: model.encoder_weights is null: the encoder starts from random weights", file=sys.stderr)
    if not needs_recipe(model, datamodule, auto_schedule):
        return []  # a YAML that sets everything: nothing to choose, fit checks the data as always
    datamodule.trainer = trainer  # as fit attaches it: the check writes beside the run, on the main process only
    datamodule.prepare_data()
    datamodule.check_before_fit()  # prints the table; refuses (DataError) data it cannot learn from
    choices = choose_recipe(hparams.get("class_weighting"), datamodule, auto_schedule, auto_validation)
    for choice in choices:
        if choice.setting == "model.class_weighting":
            hparams.class_weighting = choice.value  # saved in the checkpoints' hyper-parameters as chosen
        elif choice.setting == "trainer.max_epochs":
            trainer.fit_loop.max_epochs = choice.value
        elif choice.setting == "trainer.check_val_every_n_epoch":
            trainer.check_val_every_n_epoch = choice.value
        elif choice.setting == "latest checkpoint every_n_epochs":
            for callback in trainer.checkpoint_callbacks:
                # Only the CLI's default every-epoch one (a YAML's own interval stays); ModelCheckpoint has no
                # public setter, and its interval is read at each epoch end, so setting it before fit is safe.
                if callback.monitor is None and callback._every_n_epochs == 1 and callback._save_on_train_epoch_end:
                    callback._every_n_epochs = choice.value
    if choices and rank_zero_only.rank == 0:  # every DDP process chooses alike; one prints
        text = format_recipe(choices)
        print(text)
        out = Path(trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.txt").write_text(text + "\n")
    return choices
