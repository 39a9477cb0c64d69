"""ONNX export and ONNX Runtime parity with PyTorch on real CamVid images."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import segsvc
from segsvc.onnx_backend import OnnxBackend, export_onnx, make_runner


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = segsvc.load_default_model()
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx"))


def test_export_has_dynamic_batch_height_width(exported):
    _, path = exported
    graph = onnx.load(str(path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]


def test_ort_matches_pytorch_on_camvid(exported, camvid_mini):
    model, path = exported
    backend = OnnxBackend(path)
    for image_path in sorted((camvid_mini / "test").iterdir()):
        image = Image.open(image_path)
        agreement = (segsvc.predict_mask(backend, image) == segsvc.predict_mask(model, image)).mean()
        assert agreement >= 0.999, (image_path.name, agreement)


def test_ort_handles_other_sizes_and_batches(exported):
    _, path = exported
    backend = OnnxBackend(path)
    assert backend.run_batch(np.zeros((3, 3, 96, 160), np.float32)).shape == (3, 11, 96, 160)
    mask = segsvc.predict_mask(backend, np.zeros((33, 65, 3), np.uint8))
    assert mask.shape == (33, 65)


def test_export_leaves_the_callers_model_as_it_was(exported, tmp_path):
    model, _ = exported
    export_onnx(model, tmp_path / "again.onnx")  # a file path whose folder export creates
    assert (tmp_path / "again.onnx").is_file()
    assert model.encoder.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)  # load_model's layout, kept


def test_make_runner_picks_the_backend_and_names_an_unknown_one(exported):
    model, _ = exported
    assert make_runner(model, "torch") is model
    assert isinstance(make_runner(model, "onnx", threads=1), OnnxBackend)
    with pytest.raises(ValueError, match="backend must be one of torch, onnx, int8; got 'tensorrt'"):
        make_runner(model, "tensorrt")
