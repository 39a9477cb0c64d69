"""INT8 post-training quantisation with ONNX Runtime's tools: static, per-channel weights, calibrated activations.

The int8 forms of a model live in its model folder, made from its float graph (`model.onnx`): `model_int8.onnx`
(QOperator, what ONNX Runtime runs fastest) and `model_int8_qdq.onnx` (QDQ, what OpenVINO reads), both
stamped with the digest of the float weights they were made from, so a re-exported model never runs with a
stale int8 file. Then each reduced-precision form's agreement with fp32 on the calibration images goes into
the folder's accuracy record (`segsvc.runtime.agreement`), which decides whether backend "auto" may pick it.

Choices, measured on CamVid val (docs/performance.md, "INT8"): for ONNX Runtime, QOperator format (S8S8
and QDQ ran slower there), uint8 activations and int8 per-channel weights (u8 x s8 is x86's int8 dot
product), MinMax calibration, and `reduce_range` (7-bit weights). Without reduce_range the model lost 4-6
points of val mIoU whatever the calibration or the layers left in float: on x86 CPUs without VNNI (AVX2
only) the u8 x s8 kernels add pairs of products into int16, which saturates with full-range weights; VNNI
sums straight into int32, and one calibration serves both kinds of CPU. The first three encoder blocks
and the last three decoder stages stay in float (`FLOAT_NODES`): chosen on val with a model trained on
train only, they took the int8 model from -2.4 to +0.2 points of val mIoU and its pixel agreement with
fp32 from 96.8% to 98.7% (worst image 92.8% -> 96.9%), for a few percent of speed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from segsvc.io.images import IMAGE_SUFFIXES, to_rgb_array
from segsvc.io.modelfolder import INT8_FILE, INT8_QDQ_FILE, ONNX_FILE, StaleGraph, graph_path, read_config, stamp_graph, weights_digest
from segsvc.runtime.predict import preprocess

# Node name prefixes of the ONNX export left in float (see the module docstring).
FLOAT_NODES = (
    "/encoder/features.0/", "/encoder/features.1/", "/encoder/features.2/",
    "/decoder/stages.1/", "/decoder/stages.2/", "/decoder/stages.3/",
)  # fmt: skip
CALIBRATION_LONG_SIDE = 640


def calibration_images(folder: str | Path, count: int) -> list[Path]:
    """`count` images spread evenly over the sorted image files under `folder` (recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"calibration folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no images in the calibration folder {folder}")
    picks = np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)
    return [files[i] for i in sorted(set(picks.tolist()))]


def calibration_batch(path: Path) -> np.ndarray:
    """One preprocessed image, shrunk so that its long side is at most CALIBRATION_LONG_SIDE."""
    image = read_rgb(path)
    height, width = image.shape[:2]
    scale = CALIBRATION_LONG_SIDE / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    return preprocess(image)


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return to_rgb_array(image)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of image files."""

    def __init__(self, files: Sequence[Path]):
        self.batches: Iterator[np.ndarray] = (calibration_batch(f) for f in files)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"images": batch}


def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    files: Sequence[Path],
    method: str = "minmax",
    float_nodes: Sequence[str] = FLOAT_NODES,
    quant_format: str = "qoperator",
) -> Path:
    """Statically quantise an exported model with activation ranges from `files`."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f"calibration method must be one of {sorted(methods)}, got {method!r}")
    onnxruntime.set_default_logger_severity(3)  # the calibration session warns per unused initializer
    names = [n.name for n in onnx.load(str(fp32_path), load_external_data=False).graph.node]
    exclude = [name for name in names if name.startswith(tuple(float_nodes))]
    extra = {"CalibPercentile": 99.999} if method == "percentile" else {}
    quantize_static(
        str(fp32_path),
        str(out_path),
        _Reader(files),
        quant_format=QuantFormat.QOperator if quant_format == "qoperator" else QuantFormat.QDQ,
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        calibrate_method=methods[method],
        extra_options=extra,
    )
    return Path(out_path)


def quantize_model_dir(
    model_dir: str | Path, calibration: str | Path, count: int = 32, method: str = "minmax", float_nodes: Sequence[str] = FLOAT_NODES
) -> list[Path]:
    """Write `model_dir`/model_int8.onnx and model_int8_qdq.onnx from the folder's float graph (exported
    first when missing or stale), calibrated on `count` images; `float_nodes=()` quantises every layer
    (faster, less accurate: docs/performance.md, INT8)."""
    model_dir = Path(model_dir)
    read_config(model_dir)  # a clear error for anything that is not a model folder
    try:
        fp32 = graph_path(model_dir, ONNX_FILE)
    except StaleGraph:  # a folder from before graphs were saved with it: make it (needs torch)
        from segsvc.models.serialization import export_folder_graph

        fp32 = export_folder_graph(model_dir)
    files = calibration_images(calibration, count)
    props = {"calibration_images": str(len(files)), "calibration_method": method, "float_nodes": ",".join(float_nodes)}
    written = []
    for name, quant_format in ((INT8_FILE, "qoperator"), (INT8_QDQ_FILE, "qdq")):
        with tempfile.TemporaryDirectory() as tmp:
            partial = quantize_onnx(fp32, Path(tmp) / name, files, method, float_nodes, quant_format)
            stamp_graph(partial, weights_digest(model_dir), **props)
            written.append(Path(shutil.move(str(partial), model_dir / name)))
    return written
