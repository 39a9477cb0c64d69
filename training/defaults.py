"""The CLI's training defaults: what every run gets without a line of YAML, and how a YAML changes it.

Every run writes under `trainer.default_root_dir`:
- `checkpoints/best-epochNNN.ckpt`, the best by `val/miou`, and `checkpoints/latest.ckpt` every epoch with
  `last.ckpt` linking to it (for `--ckpt_path last`), written atomically (`AtomicCheckpointIO`);
- `lightning_logs/version_N/`: TensorBoard (Lightning's default logger) with the learning rate
  (`LearningRateMonitor`), epoch times (`EpochTimer`) and a picture per validation (`ValidationOverlays`).

A YAML changes them the Lightning way, and `--print_config` shows what a run will use:
- `trainer.callbacks: [...]` replaces the whole list (copy the entries below that you keep); `[]` turns all off;
- `trainer.enable_checkpointing: false` drops both checkpoints; `trainer.logger: false` drops TensorBoard and
  the learning-rate monitor (it needs a logger); a logger of your own (CSV, W&B) replaces TensorBoard;
- `trainer.plugins: []` writes checkpoints plainly instead of atomically.
"""

from __future__ import annotations

BEST_CHECKPOINT = {
    "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
    "init_args": {"monitor": "val/miou", "mode": "max", "filename": "best-epoch{epoch:03d}", "auto_insert_metric_name": False},
}
LATEST_CHECKPOINT = {  # latest.ckpt every epoch, last.ckpt a link to it
    "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
    "init_args": {"save_last": "link", "save_top_k": 1, "every_n_epochs": 1, "save_on_train_epoch_end": True, "filename": "latest"},
}
DEFAULT_CALLBACKS = [
    BEST_CHECKPOINT,
    LATEST_CHECKPOINT,
    {"class_path": "pytorch_lightning.callbacks.LearningRateMonitor", "init_args": {"logging_interval": "step"}},
    {"class_path": "segsvc.training.callbacks.ValidationOverlays", "init_args": {"num_images": 3}},
    {"class_path": "segsvc.training.callbacks.EpochTimer"},
]
TRAINER_DEFAULTS = {"plugins": [{"class_path": "segsvc.training.checkpoint_io.AtomicCheckpointIO"}]}


def drop_switched_off(trainer) -> None:
    """Remove the default callbacks that a switch in the YAML turned off (Lightning would refuse them).

    `trainer` is the parsed `trainer` section (a jsonargparse Namespace), changed in place.
    """
    dropped = []
    if trainer.enable_checkpointing is False:
        dropped.append("ModelCheckpoint")
    if trainer.logger is False:
        dropped.append("LearningRateMonitor")
    if dropped and trainer.callbacks:
        trainer.callbacks = [c for c in trainer.callbacks if str(c.class_path).rsplit(".", 1)[-1] not in dropped]
