"""Where the time goes: ONNX Runtime's per-node profile of a model folder's int8 file against its fp32 export.

    python benchmarks/profile_int8.py                      # the shipped default, 1 thread, 384x480
    python benchmarks/profile_int8.py --model models/mine --runs 50

Both sessions run as a service worker runs them (1 thread, ONNX Runtime's arena kept), taking turns run by run; each node's
time is its median over `--runs` runs, grouped by the layer it belongs to. The summary splits the layers the int8 file quantises
(pointwise and decoder convolutions, depthwise convolutions) from the ones it leaves in float and from the
glue (reorders, transposes, (de)quantisation). Timings on shared machines are noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYER = re.compile(r"/(encoder/features\.\d+(/conv/conv\.\d)?|decoder/stages\.\d/\w+(/\w+\.\d)?|head)")


def session(path: Path, prefix: Path):
    """A profiling session with the backend's options (`segsvc.runtime.onnxruntime_engine.session_options`), 1 thread."""
    import onnxruntime as ort

    from segsvc.runtime.onnxruntime_engine import session_options

    options = session_options(threads=1)
    options.enable_profiling, options.profile_file_prefix = True, str(prefix)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def layer_medians(profile_file: str) -> dict[str, float]:
    """Median milliseconds per layer (nodes grouped by LAYER; other nodes by their own name)."""
    per_node = collections.defaultdict(list)
    for event in json.loads(Path(profile_file).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_node[event["name"].removesuffix("_kernel_time")].append(event["dur"] / 1000)
    layers: dict[str, float] = collections.defaultdict(float)
    for node, times in per_node.items():
        match = LAYER.match(node)
        layers[match.group(0) if match else node] += float(np.median(times))
    return layers


def profile(paths: dict[str, Path], runs: int, size: tuple[int, int], folder: Path) -> dict[str, dict[str, float]]:
    """The sessions take turns run by run, so that both see the same machine; medians per layer."""
    sessions = {name: session(path, folder / name) for name, path in paths.items()}
    batch = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    for _ in range(runs):
        for s in sessions.values():
            s.run(None, {"images": batch})
    return {name: layer_medians(s.end_profiling()) for name, s in sessions.items()}


def main() -> None:
    from segsvc.io.modelfolder import DEFAULT_MODEL_DIR, INT8_FILE, ONNX_FILE, graph_path
    from segsvc.runtime.quantize import FLOAT_NODES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="model folder with model_int8.onnx, or 'default'")
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=480)
    args = parser.parse_args()
    folder = DEFAULT_MODEL_DIR if args.model == "default" else Path(args.model)
    size = (args.height, args.width)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"fp32": graph_path(folder, ONNX_FILE), "int8": graph_path(folder, INT8_FILE)}
        fp32, int8 = profile(paths, args.runs, size, Path(tmp)).values()

    float_layers = tuple(prefix.rstrip("/") for prefix in FLOAT_NODES) + ("/head",)
    in_float = [k for k in fp32 if k.startswith(float_layers) or "/up/up.0" in k or k.endswith("Concat")]
    quantised = [k for k in fp32 if LAYER.match(k) and k not in in_float and k in int8]
    depthwise = [k for k in quantised if k.startswith("/encoder") and k.endswith("conv.1")]
    groups = {
        "quantised layers": quantised,
        "  pointwise and decoder convolutions": [k for k in quantised if k not in depthwise],
        "  depthwise convolutions": depthwise,
        "layers left in float (first blocks, last stage, transposed convolutions, head)": in_float,
    }
    print(f"ONNX Runtime, 1 thread, {size[0]}x{size[1]}, medians of {args.runs} runs per node (ms)\n")
    print("| part | fp32 | int8 | fp32 / int8 |\n|---|---|---|---|")
    for name, keys in groups.items():
        a, b = sum(fp32[k] for k in keys), sum(int8.get(k, 0.0) for k in keys)
        print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
    counted = set(quantised) | set(in_float)
    glue_a = sum(v for k, v in fp32.items() if k not in counted)
    glue_b = sum(v for k, v in int8.items() if k not in counted)
    print(f"| reorders, transposes, (de)quantisation | {glue_a:.1f} | {glue_b:.1f} | {glue_a / glue_b:.2f}x |")
    total_a, total_b = sum(fp32.values()), sum(int8.values())
    print(f"| **whole model** | {total_a:.1f} | {total_b:.1f} | **{total_a / total_b:.2f}x** |")
    print("\nslowest layers in the int8 file:")
    for key in sorted(int8, key=int8.get, reverse=True)[:10]:
        print(f"  {int8[key]:5.2f} ms  (fp32 {fp32.get(key, 0.0):5.2f})  {key}")


if __name__ == "__main__":
    main()
