"""The inference runtime: every engine and precision against PyTorch on real CamVid images, stamped graphs,
backend "auto", and inference with torch unimportable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import segsvc
from segsvc.io.modelfolder import (
    ACCURACY_FILE,
    DEFAULT_MODEL_DIR,
    ONNX_FILE,
    StaleGraph,
    graph_stamp,
    read_accuracy,
    weights_digest,
)  # fmt: skip
from segsvc.models.export import export_onnx
from segsvc.models.serialization import load_model, save_model
from segsvc.runtime import FORMS, load_form, load_runtime
from segsvc.runtime.auto import decide, from_decision, ineligible
from segsvc.runtime.openvino_engine import OpenVinoEngine, cpu_capabilities
from tests.conftest import ROOT, block_torch_env

BF16 = "BF16" in cpu_capabilities()
GRAPH_FORMS = [name for name in FORMS if name != "torch"]


@pytest.fixture(scope="module")
def model():
    return segsvc.load_default_model()


@pytest.fixture(scope="module")
def test_images(camvid_mini):
    return [np.asarray(Image.open(path).convert("RGB")) for path in sorted((camvid_mini / "test").iterdir())]


def test_export_has_dynamic_batch_height_width(model, tmp_path):
    graph = onnx.load(str(export_onnx(model, tmp_path))).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert model.encoder.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)  # the caller's, kept


@pytest.mark.parametrize("form", GRAPH_FORMS)
def test_each_form_gives_pytorchs_masks(form, model, test_images):
    """fp32 engines near-exactly; bf16 and int8 forms by agreement, on every camvid_mini test image."""
    if "bf16" in form and not BF16:
        pytest.skip("this CPU has no native bf16")
    runtime = load_runtime(DEFAULT_MODEL_DIR, form, threads=1)
    assert runtime.form.name == form
    least = 0.999 if FORMS[form].precision == "fp32" else 0.97
    for image in test_images:
        agreement = float((segsvc.predict_mask(runtime, image) == segsvc.predict_mask(model, image)).mean())
        assert agreement >= least, (form, agreement)


@pytest.mark.parametrize("form", ["onnxruntime", "openvino"])
def test_engines_take_any_size_and_batch(form):
    runtime = load_runtime(DEFAULT_MODEL_DIR, form, threads=1)
    assert runtime.run_batch(np.zeros((3, 3, 96, 160), np.float32)).shape == (3, 11, 96, 160)
    assert segsvc.predict_mask(runtime, np.zeros((33, 65, 3), np.uint8)).shape == (33, 65)


def test_openvino_compiles_each_shape_once_and_keeps_a_few():
    engine = OpenVinoEngine(DEFAULT_MODEL_DIR / ONNX_FILE, threads=1, precision="f32", cached_shapes=2)
    batch = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    first = engine.run_batch(batch)
    engine.run_batch(np.zeros((1, 3, 32, 32), np.float32))
    np.testing.assert_array_equal(engine.run_batch(batch), first)  # the output is copied out of the request's buffer
    assert list(engine.requests) == [(1, 3, 32, 32), (1, 3, 64, 96)]  # most recently used last
    engine.run_batch(np.zeros((2, 3, 32, 64), np.float32))
    assert list(engine.requests) == [(1, 3, 64, 96), (2, 3, 32, 64)]  # the oldest went
    assert engine.precision == "f32"  # read back from the compiled model, not assumed


@pytest.mark.parametrize("form", ["openvino", "openvino-int8"])
def test_openvino_serves_a_new_shape_at_once_and_compiles_it_once_it_repeats(form, test_images, tmp_path):
    """A shape not compiled runs on ONNX Runtime (the same kind of graph) with no compile; on its HOT_AFTER-th
    sighting it compiles in the background, from then on OpenVINO runs it; masks agree across the two."""
    reference = load_runtime(DEFAULT_MODEL_DIR, form, threads=1)  # the form itself, every shape compiled
    free = load_form(DEFAULT_MODEL_DIR, FORMS[shape_free_file_form(form)], threads=1)
    engine = OpenVinoEngine(reference.engine.path, 1, "f32", shape_free=free, cache_dir=tmp_path, hot_after=3)
    image = test_images[0][:300, :400]  # 320x416 padded: no graph compiled for it yet
    shape = (1, 3, 320, 416)
    for sighting in range(1, 4):
        start = time.perf_counter()
        mask = segsvc.predict_mask(engine, image)
        assert time.perf_counter() - start < 0.3 + 3 * free_time(free, image), f"sighting {sighting} waited on a compile"
        agreement = float((mask == segsvc.predict_mask(reference, image)).mean())
        assert agreement >= (0.999 if FORMS[form].precision == "fp32" else 0.97), agreement
    engine.wait_for_compiles()
    assert shape in engine.requests  # compiled in the background on the third sighting
    np.testing.assert_array_equal(segsvc.predict_mask(engine, image), segsvc.predict_mask(reference, image))
    assert any(tmp_path.iterdir())  # the compiled graph is in OpenVINO's model cache, for the next process


def shape_free_file_form(form: str) -> str:
    return "onnxruntime-int8" if "int8" in form else "onnxruntime"


def free_time(engine, image) -> float:
    segsvc.predict_mask(engine, image)
    start = time.perf_counter()
    segsvc.predict_mask(engine, image)
    return time.perf_counter() - start


def test_openvino_threads_are_not_pinned():
    """Each service worker pinning its inference thread to the first core put two workers on one core."""
    engine = OpenVinoEngine(DEFAULT_MODEL_DIR / ONNX_FILE, threads=1)
    engine.run_batch(np.zeros((1, 3, 32, 32), np.float32))
    compiled = next(iter(engine.requests.values())).get_compiled_model()
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
    if len(os.sched_getaffinity(0)) > 1:
        for thread in Path("/proc/self/task").iterdir():
            assert os.sched_getaffinity(int(thread.name)) == os.sched_getaffinity(0), f"thread {thread.name} is pinned"


@pytest.mark.skipif(not BF16, reason="this CPU has no native bf16")
def test_openvino_precision_is_what_was_asked():
    engine = OpenVinoEngine(DEFAULT_MODEL_DIR / ONNX_FILE, threads=1, precision="bf16")
    engine.run_batch(np.zeros((1, 3, 32, 32), np.float32))
    assert engine.precision == "bf16"


def test_save_model_writes_a_graph_stamped_with_its_weights(tmp_path):
    folder = save_model(segsvc.build_model(3), tmp_path / "m")
    assert graph_stamp(folder / ONNX_FILE) == weights_digest(folder)
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), np.uint8)
    expected = segsvc.predict_mask(load_model(folder), image)
    np.testing.assert_array_equal(segsvc.predict_mask(load_runtime(folder, "onnxruntime"), image), expected)


@pytest.mark.parametrize("form", ["onnxruntime", "openvino", "onnxruntime-int8", "openvino-int8"])
def test_a_stale_graph_is_refused_naming_the_command(form, tmp_path):
    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")
    model = load_model(folder, fuse=False)
    with torch.no_grad():
        model.head.bias.add_(0.5)
    save_model(model, folder, dtype=torch.float16, graph=False)  # new weights, old graphs
    command = "segsvc export" if FORMS[form].file == ONNX_FILE else "segsvc quantize"
    with pytest.raises(StaleGraph, match=f"made from other weights .*: run `{command}"):
        load_runtime(folder, form)
    (folder / FORMS[form].file).unlink()
    with pytest.raises(ValueError, match=f"backend '{form}' is not available here \\(no {FORMS[form].file} in the model folder: run `{command}.*\\); available: auto"):
        load_runtime(folder, form)


def test_an_unknown_backend_names_the_backends():
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; the backends are auto, onnxruntime, openvino"):
        load_runtime(DEFAULT_MODEL_DIR, "tensorrt")


def least_worse_ratio(timings: dict[str, dict[str, float]]) -> str:
    """The form auto should keep: the one whose larger ratio to the fastest (on one size, on new sizes) is smallest."""
    fastest = {kind: min(times.values()) for kind, times in timings.items()}
    return min(timings["one_size"], key=lambda name: max(timings[kind][name] / fastest[kind] for kind in timings))


def test_auto_weighs_one_size_and_new_sizes_and_says_why():
    runtime = load_runtime(DEFAULT_MODEL_DIR, "auto", threads=1)
    timings = runtime.describe()["timings_ms"]
    assert set(timings) == {"one_size", "new_sizes"} and timings["one_size"].keys() == timings["new_sizes"].keys()
    assert {"onnxruntime", "openvino", "onnxruntime-int8", "openvino-int8"} <= set(timings["one_size"])
    assert runtime.form.name == least_worse_ratio(timings)
    assert runtime.why.startswith(f"{runtime.form.name}: ") and "new sizes" in runtime.why


def test_auto_weighs_a_reduced_form_only_with_a_good_accuracy_record(tmp_path):
    folder = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")
    (folder / ACCURACY_FILE).unlink()
    runtime = load_runtime(folder, "auto", threads=1)
    assert runtime.form.precision == "fp32" and set(runtime.timings_ms["one_size"]) == {"onnxruntime", "openvino"}
    assert "no accuracy record" in runtime.skipped["onnxruntime-int8"]
    records = {"onnxruntime-int8": {"agreement": 0.97, "worst": 0.96, "images": 4}}
    assert "under 98%" in ineligible(FORMS["onnxruntime-int8"], records)
    (folder / ACCURACY_FILE).write_text(json.dumps({"weights_sha256": "0" * 64, "forms": {"onnxruntime-int8": {"agreement": 1.0}}}))
    assert read_accuracy(folder) == {}  # a record of other weights is not this model's


def test_auto_decides_in_a_child_process_and_loads_the_winner_alone():
    decision = decide(DEFAULT_MODEL_DIR, threads=1)
    assert decision["best"] == least_worse_ratio(decision["timings_ms"])
    runtime = from_decision(DEFAULT_MODEL_DIR, decision, threads=1)
    assert runtime.form.name == decision["best"] and runtime.timings_ms == decision["timings_ms"]
    assert runtime.describe()["why"] == decision["why"]


def test_graph_engines_run_without_torch(tmp_path, camvid_mini):
    image = sorted((camvid_mini / "test").iterdir())[0]
    code = f"""
import sys, numpy as np, segsvc
from PIL import Image
from segsvc.io.modelfolder import DEFAULT_MODEL_DIR
image = Image.open({str(image)!r})
masks = [segsvc.predict_mask(segsvc.load_runtime(DEFAULT_MODEL_DIR, form, 1), image) for form in ("onnxruntime", "openvino", "auto")]
assert all(m.shape == (360, 480) for m in masks)
try:
    import torch
except ImportError:
    print("torch blocked")
print(sorted(m for m in ("torch", "onnx", "albumentations", "cv2") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=block_torch_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["torch blocked", "[]"], result.stdout
