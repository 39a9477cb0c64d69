"""PyTorch eager: a model folder's weights in the model class itself (needs the training stack: torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def run_torch(model: nn.Module, batch: np.ndarray) -> np.ndarray:
    """Logits for a float32 batch (N, 3, H, W), in eval mode and without gradients, on the model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        # channels_last roughly halves CPU latency of the depthwise convolutions (see benchmarks/).
        inputs = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
        logits = model(inputs).float().cpu().numpy()
    model.train(was_training)
    return logits


class TorchEngine:
    """A `SegmentationModel` behind the engines' `run_batch`."""

    def __init__(self, model: nn.Module, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.model = model

    @classmethod
    def from_folder(cls, folder: str | Path, threads: int | None = None) -> TorchEngine:
        from segsvc.models.serialization import load_model

        return cls(load_model(folder), threads)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        return run_torch(self.model, batch)
