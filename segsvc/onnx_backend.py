"""ONNX export (dynamic batch, height, width) and an ONNX Runtime backend for `predict_mask`."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

OPSET = 17
# Runs up to this many pixels (batch x height x width: 8 CamVid frames) keep ONNX Runtime's arena for the next.
KEEP_ARENA_PIXELS = 8 * 384 * 480


def export_onnx(model: nn.Module, path: str | Path) -> Path:
    """Write `model` as ONNX; a folder path gets `model.onnx` inside. Input 'images' (N, 3, H, W), H, W % 32 == 0."""
    path = Path(path)
    if path.suffix != ".onnx":
        path = path / "model.onnx"
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
    return path


def session_options(threads: int | None = None):
    """ONNX Runtime session options as the backend runs: full graph optimisation, `threads` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads sleep instead of spinning: spinning steals the cores that the service's other
    # workers (and anything else on a small machine) need, and measured no faster here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: an export's unused initializers are not news
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


class OnnxBackend:
    """Runs an exported model with ONNX Runtime on the CPU; pass it to `segsvc.predict_mask` like a model."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        # ORT's CPU arena reuses its buffers from run to run: a 768x768 tile of a large image ran ~7% faster
        # than with plain malloc, and the tiled image peaked lower. Left alone it would keep the largest
        # input's memory for the process's life, so runs above KEEP_ARENA_PIXELS hand it back at their end,
        # and `release_memory` does after a tiled image (`segsvc.predict`). Small images keep it: shrinking
        # after every 384x480 run cost 7%, keeping it 1% faster than no arena.
        self.release = ort.RunOptions()
        self.release.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])

    @classmethod
    def from_model(cls, model: nn.Module, threads: int | None = None) -> OnnxBackend:
        with tempfile.TemporaryDirectory() as tmp:
            return cls(export_onnx(model, Path(tmp) / "model.onnx"), threads)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        large = batch.shape[0] * batch.shape[2] * batch.shape[3] > KEEP_ARENA_PIXELS
        inputs = {"images": np.ascontiguousarray(batch, dtype=np.float32)}
        return self.session.run(["logits"], inputs, self.release if large else None)[0]

    def release_memory(self) -> None:
        """Hand the arena's memory back, as a run of a tiny image that shrinks it at its end."""
        self.session.run(["logits"], {"images": np.zeros((1, 3, 32, 32), np.float32)}, self.release)


BACKENDS = ("torch", "onnx", "int8")


def make_runner(model: nn.Module, backend: str, threads: int | None = None) -> nn.Module | OnnxBackend:
    """What `predict_mask` should run: the PyTorch model itself ("torch"), ONNX Runtime over its export
    ("onnx"), or ONNX Runtime over the int8 file in the model's folder ("int8", made by `segsvc quantize`)."""
    if backend == "torch":
        return model
    if backend == "onnx":
        return OnnxBackend.from_model(model, threads)
    if backend == "int8":
        from segsvc.quantize import int8_path

        return OnnxBackend(int8_path(model), threads)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
