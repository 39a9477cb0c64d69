"""INT8 against float: ONNX Runtime fp32, ONNX Runtime int8 (the model folder's model_int8.onnx) and, when
OpenVINO is installed, OpenVINO running the same float and int8 (QDQ) models. Interleaved rounds in one
process, medians, ratios against ORT fp32 measured in the same rounds.

    python benchmarks/bench_int8.py                    # the shipped default, 384x480, 1 and 2 threads, batch 8
    python benchmarks/bench_int8.py --model DIR --rounds 41
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import segsvc  # noqa: E402
from segsvc.onnx_backend import OnnxBackend, export_onnx  # noqa: E402
from segsvc.quantize import calibration_images, int8_path, quantize_onnx  # noqa: E402
from segsvc.serialization import DEFAULT_MODEL_DIR  # noqa: E402

HEIGHT, WIDTH = 384, 480


class OpenVinoRunner:
    """OpenVINO on the CPU; `shape` compiles for that one input shape (faster), else any shape."""

    def __init__(self, path: Path, threads: int, shape: tuple[int, ...] | None = None):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        model = core.read_model(str(path))
        if shape is not None:
            model.reshape(list(shape))
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer({0: batch})[0]


def runners(model_dir: Path, threads: int, qdq: Path | None, fp32: Path, shape: tuple[int, ...]) -> dict:
    model = segsvc.load_model(model_dir)
    found = {"ORT fp32": OnnxBackend(fp32, threads), "ORT int8": OnnxBackend(int8_path(model), threads)}
    if qdq is not None:
        found["OpenVINO fp32"] = OpenVinoRunner(fp32, threads)
        found["OpenVINO int8 (QDQ)"] = OpenVinoRunner(qdq, threads)
        # a service sees any image size; compiled for one shape, OpenVINO runs faster
        found["OpenVINO int8, 1 shape"] = OpenVinoRunner(qdq, threads, shape)
    return found


def interleaved(found: dict, batch: np.ndarray, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(rounds):
        for name, runner in found.items():
            runner.run_batch(batch)  # untimed: the timed call follows a warm one of the same model
            start = time.perf_counter()
            runner.run_batch(batch)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--batch-rounds", type=int, default=7)
    parser.add_argument("--calibration", default=str(ROOT.parent / "shared/datasets/camvid/train"))
    args = parser.parse_args()
    try:
        import openvino  # noqa: F401

        have_openvino = True
    except ImportError:
        have_openvino = False
        print("OpenVINO not installed: ONNX Runtime rows only (pip install openvino)")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(segsvc.load_model(args.model), Path(tmp) / "fp32.onnx")
        qdq = None
        if have_openvino:  # OpenVINO runs int8 from QDQ graphs; same calibration as ORT's file
            files = calibration_images(args.calibration, 64)
            qdq = quantize_onnx(fp32, Path(tmp) / "qdq.onnx", files, quant_format="qdq")
        print(f"{'setting':<22} {'runtime':<22} {'median ms':>10} {'images/s':>9} {'vs ORT fp32':>12}")
        for threads, batch_size, rounds in ((1, 1, args.rounds), (2, 1, args.rounds), (2, 8, args.batch_rounds)):
            batch = rng.standard_normal((batch_size, 3, HEIGHT, WIDTH)).astype(np.float32)
            medians = interleaved(runners(Path(args.model), threads, qdq, fp32, batch.shape), batch, rounds)
            base = medians["ORT fp32"]
            for name, seconds in medians.items():
                setting = f"{threads} thread{'s' if threads > 1 else ''}, batch {batch_size}"
                print(f"{setting:<22} {name:<22} {seconds * 1e3:>10.1f} {batch_size / seconds:>9.1f} {base / seconds:>11.2f}x")


if __name__ == "__main__":
    main()
