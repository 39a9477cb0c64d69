"""The inference runtime: a model folder's graph on an engine (PyTorch, ONNX Runtime, OpenVINO) at a precision.

A *form* is an engine running one of the folder's files at one precision (`FORMS`). `load_runtime` gives
what `segsvc.predict` / `predict_mask` run. With backend "auto" it times the forms this machine can run on a
sample input and keeps the fastest eligible one (`segsvc.runtime.auto`): which engine and precision win is a
property of the CPU (AVX2, AVX-512 VNNI, AMX), not a constant. Loading an ONNX Runtime or OpenVINO form
imports neither torch nor the training stack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segsvc.runtime.auto import choose
from segsvc.runtime.forms import BACKENDS, FORMS, Form, Runtime, available_forms, check_backend, load_form, unavailable

__all__ = ["BACKENDS", "FORMS", "Form", "Runtime", "available_forms", "check_backend", "load_form", "load_runtime", "unavailable"]


def load_runtime(
    folder: str | Path, backend: str = "auto", threads: int | None = None, sample: np.ndarray | None = None, shape_free: bool = False
) -> Runtime:
    """What `segsvc.predict` should run for the model folder `folder`: the form named `backend`, or with
    "auto" the best eligible form on one size (`sample`, a preprocessed batch; default the 360x480 warm-up
    frame) and on new sizes (`segsvc.runtime.auto`). An unknown or unavailable backend is a ValueError naming
    the available ones. `shape_free`: images of many sizes, no compile stall (`load_form`); auto implies it."""
    check_backend(folder, backend)
    if backend == "auto":
        return choose(folder, threads, sample)
    return Runtime(load_form(folder, FORMS[backend], threads, shape_free), FORMS[backend])
