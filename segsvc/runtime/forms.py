"""Forms: an engine running one of a model folder's files at one precision (`FORMS`), what each needs to run
here (`unavailable`), and loading one (`load_form`) into a `Runtime`."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segsvc.io.modelfolder import INT8_FILE, INT8_QDQ_FILE, ONNX_FILE, REMAKE, WEIGHTS_FILE, graph_path


@dataclass(frozen=True)
class Form:
    name: str
    engine: str  # torch, onnxruntime, openvino
    precision: str  # fp32, bf16, int8, int8+bf16 (int8 layers, the float ones in bf16)
    file: str  # the model folder's file it runs

    @property
    def reduced(self) -> bool:
        """Runs below fp32 somewhere, so it may serve only with an accuracy record (`segsvc.runtime.auto`)."""
        return self.precision != "fp32"


FORMS = {
    form.name: form
    for form in (
        Form("onnxruntime", "onnxruntime", "fp32", ONNX_FILE),
        Form("openvino", "openvino", "fp32", ONNX_FILE),
        Form("openvino-bf16", "openvino", "bf16", ONNX_FILE),
        Form("onnxruntime-int8", "onnxruntime", "int8", INT8_FILE),
        Form("openvino-int8", "openvino", "int8", INT8_QDQ_FILE),
        Form("openvino-int8-bf16", "openvino", "int8+bf16", INT8_QDQ_FILE),
        Form("torch", "torch", "fp32", WEIGHTS_FILE),
    )
}
BACKENDS = ("auto", *FORMS)


@dataclass
class Runtime:
    """An engine loaded for one form, and how it was chosen; runs like a model in `segsvc.runtime.predict`."""

    engine: object
    form: Form
    chosen_by: str = "asked for"
    # when auto timed them: {"one_size": median ms by form, "new_sizes": ms per megapixel by form}
    timings_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # form -> why auto did not weigh it
    why: str = ""  # auto's reason for this form, in words

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        return self.engine.run_batch(batch)

    def prepare(self, shape: tuple[int, ...]) -> None:
        """Get ready for inputs of `shape` now (OpenVINO compiles it), not on first use."""
        if hasattr(self.engine, "prepare"):
            self.engine.prepare(shape)

    def release_memory(self, idle: bool = False) -> None:
        """Hand back what the engine keeps from a large image; `idle` (nothing more is queued): also what a
        run of large images would reuse."""
        if hasattr(self.engine, "release_memory"):
            self.engine.release_memory(idle)

    def describe(self) -> dict:
        return {
            "form": self.form.name,
            "engine": self.form.engine,
            "precision": self.form.precision,
            "chosen_by": self.chosen_by,
            "why": self.why,
            "timings_ms": self.timings_ms,
            "skipped": self.skipped,
            **(self.engine.describe() if hasattr(self.engine, "describe") else {}),
        }


def unavailable(folder: str | Path, form: Form) -> str | None:
    """Why `form` cannot run here for `folder` (engine not installed, file missing, CPU lacks the precision), or None."""
    module = "torch" if form.engine == "torch" else form.engine
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    if not (Path(folder) / form.file).is_file():
        return f"no {form.file} in the model folder: run `{REMAKE[form.file].format(folder=folder)}`"
    if "bf16" in form.precision:
        from segsvc.runtime.openvino_engine import cpu_capabilities

        if "BF16" not in cpu_capabilities():
            return "this CPU has no native bf16"
    return None


def available_forms(folder: str | Path) -> list[str]:
    return [name for name, form in FORMS.items() if unavailable(folder, form) is None]


def load_form(folder: str | Path, form: Form, threads: int | None = None, shape_free: bool = False):
    """The engine for `form` over `folder`'s file; a stale or missing graph is a one-line StaleGraph.

    `shape_free` (a service, any image size): an OpenVINO form runs a shape it has not compiled on ONNX
    Runtime (`shape_free_file`) until the shape repeats, and keeps its compiled graphs in OpenVINO's model
    cache (`segsvc.runtime.openvino_engine`); without it, every shape runs on the form itself, as an accuracy
    record or an evaluation of the form must."""
    if form.engine == "torch":
        from segsvc.runtime.torch_engine import TorchEngine

        return TorchEngine.from_folder(folder, threads)
    path = graph_path(folder, form.file)
    if form.engine == "onnxruntime":
        from segsvc.runtime.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, threads)
    from segsvc.runtime.openvino_engine import OpenVinoEngine, default_cache_dir

    precision = "bf16" if "bf16" in form.precision else "f32"
    if not shape_free or (free_file := shape_free_file(folder, form)) is None:
        return OpenVinoEngine(path, threads, precision)
    from segsvc.runtime.onnxruntime_engine import OnnxRuntimeEngine

    free = OnnxRuntimeEngine(graph_path(folder, free_file), threads)
    return OpenVinoEngine(path, threads, precision, shape_free=free, cache_dir=default_cache_dir())


def shape_free_file(folder: str | Path, form: Form) -> str | None:
    """The graph ONNX Runtime runs for an OpenVINO form's uncompiled shapes: the int8 (QOperator) graph for an
    int8 form, the float graph for a float one; None where ONNX Runtime or that file is missing."""
    file = INT8_FILE if form.precision.startswith("int8") else ONNX_FILE
    if importlib.util.find_spec("onnxruntime") is None or not (Path(folder) / file).is_file():
        return None
    return file


def check_backend(folder: str | Path, backend: str) -> None:
    """A ValueError naming the available backends when `backend` is unknown or cannot run here."""
    if backend == "auto":
        return
    if backend not in FORMS:
        raise ValueError(f"unknown backend {backend!r}; the backends are {', '.join(BACKENDS)}")
    if (why := unavailable(folder, FORMS[backend])) is not None:
        raise ValueError(f"backend {backend!r} is not available here ({why}); available: {', '.join(['auto', *available_forms(folder)])}")
