"""Checkpoints written atomically: a crash mid-save leaves the previous file intact, never a torn one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        super().save_checkpoint(checkpoint, partial, storage_options)
        os.replace(partial, path)  # atomic on POSIX
