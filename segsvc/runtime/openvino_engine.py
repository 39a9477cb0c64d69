"""OpenVINO on the CPU: a graph compiled for each input shape, a few shapes kept, precision set explicitly.

Compiled for one shape, OpenVINO runs this model faster than for any shape (earlier measurements: dynamic
shapes ran no faster than ONNX Runtime), and the shapes a worker sees repeat: the service's usual image
sizes, a dataset's frames, the few tile shapes of a large image. Compiling a new shape takes 0.1-0.5 s.
The precision is never left to the CPU's default (bf16 on CPUs that have it): "f32" or "bf16" for the
float layers; an int8 (QDQ) graph runs its quantised layers in int8 and the rest in that precision.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

CACHED_SHAPES = 6
# Compiled shapes over this many pixels (batch x height x width) are dropped by `release_memory`, so a
# worker that just ran a large image's tiles returns to its idle size: each keeps its activation buffers.
KEEP_PIXELS = 8 * 384 * 480
# A worker with nothing queued keeps only shapes up to this (a CamVid frame's, 384x480): a run of large
# images reuses its tile shape (896x896: ~100 MB of buffers, 0.8 s to compile), a worker at rest needs none.
IDLE_KEEP_PIXELS = 512 * 512
PRECISIONS = {"f32": "f32", "bf16": "bf16"}


def cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin says this CPU runs natively: FP32, BF16, INT8, ..."""
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoEngine:
    """Runs an ONNX graph with OpenVINO's CPU plugin; pass it to `segsvc.predict_mask` like a model."""

    def __init__(self, path: str | Path, threads: int | None = None, precision: str = "f32", cached_shapes: int = CACHED_SHAPES):
        import openvino as ov

        if precision not in PRECISIONS:
            raise ValueError(f"OpenVINO precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.core = ov.Core()
        self.path = str(path)  # read again for each new shape: holding the read graph costs ~17 MB resident
        self.config = {
            "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.cached_shapes = cached_shapes
        self.requests: OrderedDict[tuple[int, ...], object] = OrderedDict()  # shape -> infer request, oldest first

    def request_for(self, shape: tuple[int, ...]):
        request = self.requests.pop(shape, None)
        if request is None:
            model = self.core.read_model(self.path)  # ~40 ms beside the 0.1-0.5 s of compiling
            model.reshape(list(shape))
            request = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            while len(self.requests) >= self.cached_shapes:
                self.requests.popitem(last=False)
        self.requests[shape] = request  # most recently used last
        return request

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        request = self.request_for(tuple(batch.shape))
        # Input and output shared, not copied by infer(): fewer steps that hold the GIL, each of which waits for it
        # while another thread (a service's event loop) runs Python. Beside a busy thread a plain infer() took
        # 31 ms, this 20 ms (9 ms alone), and 11 ms at a 1 ms switch interval (the service sets it).
        outputs = request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True, share_outputs=True)
        return outputs[0].copy()  # the request's buffer, reused next run

    def release_memory(self, idle: bool = False) -> None:
        """Drop the compiled shapes of large inputs (their buffers go with them); `idle`: all but small ones."""
        keep = IDLE_KEEP_PIXELS if idle else KEEP_PIXELS
        for shape in [s for s in self.requests if s[0] * s[2] * s[3] > keep]:
            del self.requests[shape]

    @property
    def precision(self) -> str:
        """The precision OpenVINO runs the float layers in, as compiled (read back, not assumed)."""
        if not self.requests:
            return self.config["INFERENCE_PRECISION_HINT"]
        request = next(iter(self.requests.values()))
        return request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT").get_type_name()
