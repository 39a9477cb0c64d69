"""segsvc: a small, fast semantic-segmentation library (MobileNetV2 encoder, transposed-convolution decoder)."""

from __future__ import annotations

from segsvc.model import SegmentationModel, build_model
from segsvc.predict import predict, predict_mask, preprocess
from segsvc.serialization import load_default_model, load_model, save_model

__all__ = [
    "SegmentationModel",
    "build_model",
    "load_default_model",
    "load_model",
    "predict",
    "predict_mask",
    "preprocess",
    "save_model",
]
__version__ = "0.1.0"
