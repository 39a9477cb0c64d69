"""OpenVINO on the CPU: a graph compiled for each input shape that repeats, any other shape served at once.

Compiled for one shape, OpenVINO runs this model faster than ONNX Runtime on CPUs with VNNI or bf16, but a
new shape costs a compile (0.3-1.4 s) and OpenVINO's dynamic shapes stall about as long on each new shape
(their kernels are made per shape). Real uploads each have their own size, so a shape compiles only once it
has been seen `HOT_AFTER` times; until then, and while it compiles in a background thread, ONNX Runtime runs
it (no per-shape work) from the model folder's graph of the same kind (`shape_free`: fp32 for float forms,
the QOperator int8 graph for int8 ones). Compiled graphs go to OpenVINO's model cache (`cache_dir`), so a
restart or another worker imports a shape in a quarter of the compile time.
Threads are never pinned: each service worker would pin its inference thread to the first core, and two
workers would share one core (OpenVINO's default, ENABLE_CPU_PINNING, is on).
The precision is never left to the CPU's default (bf16 on CPUs that have it): "f32" or "bf16" for the
float layers; an int8 (QDQ) graph runs its quantised layers in int8 and the rest in that precision.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

CACHED_SHAPES = 6
# A shape compiles on its HOT_AFTER-th sighting: a compile costs as much CPU as 30-100 inferences, which it
# repays at 10-30% per inference only when the shape keeps coming (a camera's frames, a large image's tiles).
HOT_AFTER = 8
COUNTED_SHAPES = 256  # sightings are counted for this many recent shapes
# Compiled shapes over this many pixels (batch x height x width) are dropped by `release_memory`, so a
# worker that just ran a large image's tiles returns to its idle size: each keeps its activation buffers.
KEEP_PIXELS = 8 * 384 * 480
# A worker with nothing queued keeps only shapes up to this (a CamVid frame's, 384x480): a run of large
# images reuses its tile shape (896x896: ~100 MB of buffers, 0.8 s to compile), a worker at rest needs none.
IDLE_KEEP_PIXELS = 512 * 512
PRECISIONS = {"f32": "f32", "bf16": "bf16"}


def default_cache_dir() -> Path:
    """Where compiled graphs are cached: `$XDG_CACHE_HOME/segsvc/openvino` (default ~/.cache/segsvc/openvino).
    OpenVINO keys each by the graph, shape, settings and CPU, so a changed model never imports a stale one."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segsvc/openvino"


def cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin says this CPU runs natively: FP32, BF16, INT8, ..."""
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoEngine:
    """Runs an ONNX graph with OpenVINO's CPU plugin; pass it to `segsvc.predict_mask` like a model.

    Args:
        shape_free: An engine with `run_batch` for any shape (ONNX Runtime), run for shapes not compiled
            yet; None compiles every new shape before running it, as a batch job over few shapes wants.
        cache_dir: OpenVINO's model cache folder (compiled graphs, reused across processes), or None.
        hot_after: With `shape_free`: the sighting of a shape that starts its compile in the background.
    """

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        precision: str = "f32",
        cached_shapes: int = CACHED_SHAPES,
        shape_free: object | None = None,
        cache_dir: str | Path | None = None,
        hot_after: int = HOT_AFTER,
    ):
        import openvino as ov

        if precision not in PRECISIONS:
            raise ValueError(f"OpenVINO precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.core = ov.Core()
        if cache_dir is not None:
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        self.path = str(path)  # read again for each new shape: holding the read graph costs ~17 MB resident
        self.config = {
            "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "ENABLE_CPU_PINNING": False,
        }
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.cached_shapes = cached_shapes
        self.shape_free = shape_free
        self.hot_after = hot_after
        self.requests: OrderedDict[tuple[int, ...], object] = OrderedDict()  # shape -> infer request, oldest first
        self.sightings: OrderedDict[tuple[int, ...], int] = OrderedDict()
        self.compiling: set[tuple[int, ...]] = set()
        self.lock = threading.Lock()  # `requests` is also written by the compiling thread
        self.compiler = ThreadPoolExecutor(1, thread_name_prefix="openvino-compile") if shape_free is not None else None

    def compile(self, shape: tuple[int, ...]):
        model = self.core.read_model(self.path)  # ~40 ms beside the 0.3-1.4 s of compiling
        model.reshape(list(shape))
        return self.core.compile_model(model, "CPU", self.config).create_infer_request()

    def keep(self, shape: tuple[int, ...], request) -> None:
        with self.lock:
            self.requests[shape] = request  # most recently used last
            self.requests.move_to_end(shape)
            while len(self.requests) > self.cached_shapes:
                self.requests.popitem(last=False)

    def prepare(self, shape: tuple[int, ...]) -> None:
        """Compile `shape` now (a service's usual size at start-up), unless it is compiled already."""
        if shape not in self.requests:
            self.keep(shape, self.compile(shape))

    def compile_in_background(self, shape: tuple[int, ...]) -> None:
        def work() -> None:
            try:
                self.keep(shape, self.compile(shape))
            finally:
                self.compiling.discard(shape)

        self.compiling.add(shape)
        self.compiler.submit(work)

    def request_for(self, shape: tuple[int, ...]):
        """The compiled request for `shape`; None when `shape_free` should run it (not compiled yet)."""
        with self.lock:
            request = self.requests.get(shape)
            if request is not None:
                self.requests.move_to_end(shape)
                return request
        if self.shape_free is None:
            self.keep(shape, request := self.compile(shape))
            return request
        seen = self.sightings.pop(shape, 0) + 1
        self.sightings[shape] = seen  # most recent last
        if len(self.sightings) > COUNTED_SHAPES:
            self.sightings.popitem(last=False)
        if seen >= self.hot_after and shape not in self.compiling:
            self.compile_in_background(shape)
        return None

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        request = self.request_for(tuple(batch.shape))
        if request is None:
            return self.shape_free.run_batch(batch)
        # Input and output shared, not copied by infer(): fewer steps that hold the GIL, each of which waits for it
        # while another thread (a service's event loop) runs Python. Beside a busy thread a plain infer() took
        # 31 ms, this 20 ms (9 ms alone), and 11 ms at a 1 ms switch interval (the service sets it).
        outputs = request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True, share_outputs=True)
        return outputs[0].copy()  # the request's buffer, reused next run

    def release_memory(self, idle: bool = False) -> None:
        """Drop the compiled shapes of large inputs (their buffers go with them); `idle`: all but small ones."""
        keep = IDLE_KEEP_PIXELS if idle else KEEP_PIXELS
        with self.lock:
            for shape in [s for s in self.requests if s[0] * s[2] * s[3] > keep]:
                del self.requests[shape]
        if self.shape_free is not None and hasattr(self.shape_free, "release_memory"):
            self.shape_free.release_memory(idle)

    def wait_for_compiles(self) -> None:
        """Block until the background compiles started so far are done (tests, benchmarks)."""
        if self.compiler is not None:
            self.compiler.submit(lambda: None).result()

    def describe(self) -> dict:
        with self.lock:  # GET /model reads this while the compiling thread may add a shape
            compiled = [list(shape) for shape in self.requests]
        return {
            "compiled_shapes": compiled,
            "new_shapes": (
                f"run by ONNX Runtime ({Path(getattr(self.shape_free, 'path', '')).name}) until seen {self.hot_after} "
                "times, then compiled in the background"
                if self.shape_free is not None
                else "compiled before they run"
            ),
        }

    @property
    def precision(self) -> str:
        """The precision OpenVINO runs the float layers in, as compiled (read back, not assumed)."""
        with self.lock:
            request = next(iter(self.requests.values()), None)
        if request is None:
            return self.config["INFERENCE_PRECISION_HINT"]
        return request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT").get_type_name()
