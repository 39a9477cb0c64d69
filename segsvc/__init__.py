"""segsvc: a small, fast semantic-segmentation library (MobileNetV2 encoder, transposed-convolution decoder).

Inference (`predict`, `predict_mask`, `load_runtime`) runs without torch; building, loading and saving the
PyTorch model (`build_model`, `load_model`, `save_model`) import it when first used.
"""

from __future__ import annotations

import importlib

from segsvc.runtime import load_runtime
from segsvc.runtime.predict import predict, predict_mask, preprocess

# name -> the module that defines it, imported on first use (PEP 562): a service never pays for torch
_TORCH_API = {
    "SegmentationModel": "segsvc.models.model",
    "build_model": "segsvc.models.model",
    "load_default_model": "segsvc.models.serialization",
    "load_model": "segsvc.models.serialization",
    "save_model": "segsvc.models.serialization",
}

__all__ = [
    "SegmentationModel",
    "build_model",
    "load_default_model",
    "load_model",
    "load_runtime",
    "predict",
    "predict_mask",
    "preprocess",
    "save_model",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _TORCH_API:
        return getattr(importlib.import_module(_TORCH_API[name]), name)
    raise AttributeError(f"module 'segsvc' has no attribute {name!r}")
