"""ONNX Runtime on the CPU: a model folder's float or int8 graph, any input shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Runs up to this many pixels (batch x height x width: 8 CamVid frames) keep ONNX Runtime's arena for the next.
KEEP_ARENA_PIXELS = 8 * 384 * 480


def session_options(threads: int | None = None):
    """ONNX Runtime session options as the engine runs: full graph optimisation, `threads` intra-op threads."""
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


class OnnxRuntimeEngine:
    """Runs an ONNX graph with ONNX Runtime; pass it to `segsvc.predict_mask` like a model."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        # ORT's CPU arena reuses its buffers from run to run: a 768x768 tile of a large image ran ~7% faster
        # than with plain malloc, and the tiled image peaked lower. Left alone it would keep the largest
        # input's memory for the process's life, so runs above KEEP_ARENA_PIXELS hand it back at their end,
        # and `release_memory` does after a tiled image (`segsvc.runtime.predict`). Small images keep it: shrinking
        # after every 384x480 run cost 7%, keeping it 1% faster than no arena.
        self.path = str(path)
        self.release = ort.RunOptions()
        self.release.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        large = batch.shape[0] * batch.shape[2] * batch.shape[3] > KEEP_ARENA_PIXELS
        inputs = {"images": np.ascontiguousarray(batch, dtype=np.float32)}
        return self.session.run(["logits"], inputs, self.release if large else None)[0]

    def describe(self) -> dict:
        return {"new_shapes": "run at once, with no per-shape work"}

    def release_memory(self, idle: bool = False) -> None:
        """Hand the arena's memory back, as a run of a tiny image that shrinks it at its end (all of it,
        `idle` or not)."""
        self.session.run(["logits"], {"images": np.zeros((1, 3, 32, 32), np.float32)}, self.release)
