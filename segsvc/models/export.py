"""A PyTorch model -> its ONNX graph (dynamic batch, height, width), which every non-PyTorch engine runs."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from segsvc.io.modelfolder import ONNX_FILE, stamp_graph

OPSET = 17


def export_onnx(model: nn.Module, path: str | Path, weights_sha256: str | None = None) -> Path:
    """Write `model` as ONNX; a folder path gets `model.onnx` inside. Input 'images' (N, 3, H, W), H, W % 32 == 0.
    `weights_sha256` stamps the graph with the digest of the weights file it was made from (`segsvc.io.modelfolder`)."""
    path = Path(path)
    if path.suffix != ".onnx":
        path = path / ONNX_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).eval().float().to(memory_format=torch.contiguous_format)  # the caller's stays as it is
    example = torch.zeros(1, 3, 64, 64)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}},
        opset_version=OPSET,
        dynamo=False,
    )
    if weights_sha256 is not None:
        stamp_graph(path, weights_sha256)
    return path

