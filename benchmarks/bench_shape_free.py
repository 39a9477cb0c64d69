"""What a new image size costs on each engine that could serve it, in one process, 1 thread (a service worker).

    python benchmarks/bench_shape_free.py                  # the shipped default, 8 sizes from 224x320 to 736x960
    python benchmarks/bench_shape_free.py --model DIR --rounds 9

For each size, medians over `--rounds` interleaved runs:
- OpenVINO compiled for the size (the one-size path): its compile, its memory (resident growth per kept
  graph), its run;
- OpenVINO with dynamic height and width, compiled once: the first run of each new size (its kernels are
  made then) and the runs after it;
- ONNX Runtime (the service's shape-free engine: no per-size work) on the int8 and fp32 graphs.
for the int8 + bf16 form (QDQ graph) and the bf16 one (float graph). A shape-free engine can serve a stream
of sizes at the one-size pace only if its first run and its later runs are both close to the compiled run.
It prints the CPU first: on AMX, OpenVINO's bf16 tiles make the compiled graph fast; ONNX Runtime has none.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segsvc.io.modelfolder import DEFAULT_MODEL_DIR, INT8_FILE, INT8_QDQ_FILE, ONNX_FILE, graph_path  # noqa: E402
from segsvc.runtime.cpu import cpu_description  # noqa: E402
from segsvc.runtime.onnxruntime_engine import OnnxRuntimeEngine  # noqa: E402

SIZES = [(224, 320), (288, 416), (384, 480), (512, 384), (352, 640), (480, 640), (608, 800), (736, 960)]
CONFIG = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False, "INFERENCE_NUM_THREADS": 1}


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def openvino_form(core, path: Path, precision: str, rounds: int, ort_engines: dict) -> list[dict]:
    """One row per size: compiled (compile s, MB, ms), dynamic (first, later ms), ONNX Runtime (ms per graph)."""
    config = {**CONFIG, "INFERENCE_PRECISION_HINT": precision}
    model = core.read_model(str(path))
    model.reshape([1, 3, -1, -1])
    dynamic = core.compile_model(model, "CPU", config).create_infer_request()
    kept, rows = [], []
    for height, width in SIZES:
        batch = np.random.default_rng(height * width).random((1, 3, height, width), dtype=np.float32)
        first = timed(lambda: dynamic.infer({0: batch}))
        before = resident_mb()
        model = core.read_model(str(path))
        model.reshape([1, 3, height, width])
        start = time.perf_counter()
        compiled = core.compile_model(model, "CPU", config).create_infer_request()
        compile_s = time.perf_counter() - start
        compiled.infer({0: batch})
        kept.append(compiled)  # kept, as a service keeps its compiled sizes: the memory each one holds
        grown = resident_mb() - before
        runs = {
            "compiled": lambda: compiled.infer({0: batch}),
            "dynamic": lambda: dynamic.infer({0: batch}),
            **{name: functools.partial(engine.run_batch, batch) for name, engine in ort_engines.items()},
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                times[name].append(timed(run))
        medians = {name: statistics.median(values) * 1e3 for name, values in times.items()}
        rows.append({"size": f"{height}x{width}", "compile_s": compile_s, "mb": grown, "first_ms": first * 1e3, **medians})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    import openvino as ov

    print(cpu_description())
    ort_engines = {
        "ort int8": OnnxRuntimeEngine(graph_path(args.model, INT8_FILE), threads=1),
        "ort fp32": OnnxRuntimeEngine(graph_path(args.model, ONNX_FILE), threads=1),
    }
    forms = {"openvino-int8-bf16": (graph_path(args.model, INT8_QDQ_FILE), "bf16"), "openvino-bf16": (graph_path(args.model, ONNX_FILE), "bf16")}
    for name, (path, precision) in forms.items():
        rows = openvino_form(ov.Core(), path, precision, args.rounds, ort_engines)
        print(f"\n{name}, 1 thread, medians of {args.rounds} interleaved runs (ms); ratios against its compiled run")
        print("| size | compile s | MB kept | compiled | dynamic, first run | dynamic, later | ORT int8 | ORT fp32 |")
        print("|---|---|---|---|---|---|---|---|")
        for row in rows:
            base = row["compiled"]
            cells = [f"{row[key]:.1f} ({row[key] / base:.2f}x)" for key in ("first_ms", "dynamic", "ort int8", "ort fp32")]
            print(f"| {row['size']} | {row['compile_s']:.2f} | {row['mb']:.0f} | {base:.1f} | " + " | ".join(cells) + " |")
        summary = {key: statistics.median(row[key] / row["compiled"] for row in rows) for key in ("first_ms", "dynamic", "ort int8", "ort fp32")}
        print("median ratio: " + ", ".join(f"{key.replace('_ms', ' run')} {value:.2f}x" for key, value in summary.items()))


if __name__ == "__main__":
    main()
