"""Before `fit`: the data check, then the settings the YAML left unset, chosen from it (`segsvc.recipe`).

The choices are printed with their reasons and written to `<default_root_dir>/recipe.txt`; each names
the YAML key that overrides it.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from segsvc.recipe import Choice, choose_class_weighting, choose_schedule, format_recipe


def apply_recipe(trainer: pl.Trainer, model: pl.LightningModule, datamodule, auto_schedule: bool, auto_validation: bool) -> list[Choice]:
    """Run fit's data check now and set what is still unset: crop size, class weighting, schedule."""
    auto_weighting = model.hparams.get("class_weighting") == "auto"
    if not (auto_weighting or auto_schedule or getattr(datamodule, "crop_size", 0) is None):
        return []  # a YAML that sets everything: nothing to choose, fit checks the data as always
    datamodule.trainer = trainer  # as fit attaches it: the check writes beside the run, on the main process only
    datamodule.prepare_data()
    datamodule.check_before_fit()  # prints the table; refuses (DataError) data it cannot learn from
    choices = list(datamodule.choices)
    if auto_weighting:
        choice = choose_class_weighting(datamodule.stats["train"].class_pixels, datamodule.class_names)
        model.hparams.class_weighting = choice.value
        choices.append(choice)
    if auto_schedule:
        epochs, every = choose_schedule(len(datamodule.dataset("train")), datamodule.batch_size)
        trainer.fit_loop.max_epochs = epochs.value
        choices.append(epochs)
        if auto_validation:
            trainer.check_val_every_n_epoch = every.value
            choices.append(every)
    if choices and rank_zero_only.rank == 0:  # every DDP process chooses alike; one prints
        text = format_recipe(choices)
        print(text)
        out = Path(trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.txt").write_text(text + "\n")
    return choices
