"""INT8 against float: ONNX Runtime fp32, ONNX Runtime int8 (the model folder's model_int8.onnx) and, when
OpenVINO is installed, OpenVINO running the same float and int8 (QDQ) models. Interleaved rounds in one
process, medians, ratios against ORT fp32 measured in the same rounds. It first prints what this CPU's int8
dot products run on: the ratios depend on it more than on anything in the model.

    python benchmarks/bench_int8.py                    # the shipped default, 384x480, 1 and 2 threads, batch 8
    python benchmarks/bench_int8.py --model DIR --rounds 41
    python benchmarks/bench_int8.py --every-layer --agreement ../shared/datasets/camvid_mini/test
        # + both runtimes with every layer in int8 (the ceiling of layer choice), and each int8 form's
        #   pixel agreement with ORT fp32 on every image of a folder
"""

from __future__ import annotations

import argparse
import os
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
# cpuinfo flag -> the int8 dot product it gives, best first
INT8_ISA = (
    ("amx_int8", "AMX-INT8 tiles"),
    ("avx512_vnni", "AVX-512 VNNI (u8 x s8 summed straight into int32)"),
    ("avx_vnni", "AVX-VNNI (u8 x s8 summed straight into int32)"),
    ("avx512bw", "AVX-512BW without VNNI (u8 x s8 pairs summed in saturating int16)"),
    ("avx2", "AVX2 without VNNI (u8 x s8 pairs summed in saturating int16)"),
)  # fmt: skip


def int8_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU model and the best int8 dot product its flags offer (Linux)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return "unknown CPU (no /proc/cpuinfo)"
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    isa = next((name for flag, name in INT8_ISA if flag in flags), "no AVX2: scalar or SSE int8")
    return f"{fields.get('model name', 'unknown CPU')}, {os.cpu_count()} cores: {isa}"


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


def runners(model_dir: Path, threads: int, files: dict[str, Path], shape: tuple[int, ...] | None) -> dict:
    """Every runtime and model form in `files` at `threads`; `shape` adds OpenVINO compiled for that shape."""
    model = segsvc.load_model(model_dir)
    found = {"ORT fp32": OnnxBackend(files["fp32"], threads), "ORT int8": OnnxBackend(int8_path(model), threads)}
    if "every" in files:
        found["ORT int8, every layer"] = OnnxBackend(files["every"], threads)
    if "qdq" in files:
        found["OpenVINO fp32"] = OpenVinoRunner(files["fp32"], threads)
        found["OpenVINO int8 (QDQ)"] = OpenVinoRunner(files["qdq"], threads)
        if shape is not None:  # a service sees any image size; compiled for one shape, OpenVINO runs faster
            found["OpenVINO int8, 1 shape"] = OpenVinoRunner(files["qdq"], threads, shape)
    if "every qdq" in files:
        found["OpenVINO every layer" + (", 1 shape" if shape else "")] = OpenVinoRunner(files["every qdq"], threads, shape)
    return found


def agreement(found: dict, files: list[Path], folder: Path) -> None:
    """Each int8 form's share of pixels with the same class as ORT fp32's, image by image."""
    from segsvc.data import read_image

    images = [read_image(path) for path in files]
    reference = [segsvc.predict_mask(found["ORT fp32"], image) for image in images]
    print(f"pixels agreeing with ORT fp32 on the {len(images)} images of {folder}")
    for name, runner in found.items():
        if "int8" in name or "every" in name:
            shares = [float((segsvc.predict_mask(runner, image) == ref).mean()) for image, ref in zip(images, reference)]
            print(f"  {name:<30} {' / '.join(f'{100 * s:.1f}%' for s in shares)}  (worst {100 * min(shares):.1f}%)")


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
    parser.add_argument("--every-layer", action="store_true", help="add both runtimes with every layer in int8")
    parser.add_argument("--agreement", type=Path, help="a folder of images: each int8 form's agreement with fp32")
    args = parser.parse_args()
    if args.agreement:
        from segsvc.data import IMAGE_SUFFIXES

        if not args.agreement.is_dir():
            parser.error(f"--agreement: no such folder {args.agreement}")
        agreement_files = sorted(p for p in args.agreement.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not agreement_files:
            parser.error(f"--agreement: no images in {args.agreement}")
    print(int8_isa())
    try:
        import openvino  # noqa: F401

        have_openvino = True
    except ImportError:
        have_openvino = False
        print("OpenVINO not installed: ONNX Runtime rows only (pip install openvino)")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"fp32": export_onnx(segsvc.load_model(args.model), Path(tmp) / "fp32.onnx")}
        if have_openvino:  # OpenVINO runs int8 from QDQ graphs; same calibration as ORT's file
            images = calibration_images(args.calibration, 64)
            files["qdq"] = quantize_onnx(files["fp32"], Path(tmp) / "qdq.onnx", images, quant_format="qdq")
        if args.every_layer:  # as `segsvc quantize --all-int8` makes it: 32 images
            images = calibration_images(args.calibration, 32)
            files["every"] = quantize_onnx(files["fp32"], Path(tmp) / "every.onnx", images, float_nodes=())
            if have_openvino:
                every = quantize_onnx(files["fp32"], Path(tmp) / "every_qdq.onnx", images, float_nodes=(), quant_format="qdq")
                files["every qdq"] = every
        if args.agreement:
            agreement(runners(Path(args.model), 1, files, None), agreement_files, args.agreement)
        print(f"{'setting':<22} {'runtime':<30} {'median ms':>10} {'images/s':>9} {'vs ORT fp32':>12}")
        for threads, batch_size, rounds in ((1, 1, args.rounds), (2, 1, args.rounds), (2, 8, args.batch_rounds)):
            batch = rng.standard_normal((batch_size, 3, HEIGHT, WIDTH)).astype(np.float32)
            medians = interleaved(runners(Path(args.model), threads, files, batch.shape), batch, rounds)
            base = medians["ORT fp32"]
            for name, seconds in medians.items():
                setting = f"{threads} thread{'s' if threads > 1 else ''}, batch {batch_size}"
                print(f"{setting:<22} {name:<30} {seconds * 1e3:>10.1f} {batch_size / seconds:>9.1f} {base / seconds:>11.2f}x")


if __name__ == "__main__":
    main()
