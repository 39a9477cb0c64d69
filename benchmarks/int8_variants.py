"""Which layers to leave in float in the int8 model: each variant's mIoU and its pixel agreement with fp32.

    python benchmarks/int8_variants.py --model runs/gpu/train_model --split val      # the table in docs/measurements/int8.md
    python benchmarks/int8_variants.py --model M --variants all-int8 shipped --limit 5   # a quick look
    python benchmarks/int8_variants.py --model segsvc/assets/camvid_default --split test --time   # + speed

`--time` adds each variant's ONNX Runtime time at 1 thread (a service worker), 384x480, against OpenVINO's
graph compiled for that size in the shipped int8 + bf16 form (QDQ, float layers in bf16), timed in the same
rounds: how close ONNX Runtime, which runs every image size with no per-size work, comes to it.

Choose on a split the model did not train on: the shipped model trains on train+val, so that table
comes from its train-only twin on val. Every variant is calibrated on the same 32 train images (MinMax,
reduce_range, as `segsvc quantize`) and run by ONNX Runtime at 2 threads.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from segsvc.data.datasets import CAMVID_IGNORE_INDEX
from segsvc.evaluation.evaluate import evaluate_folder
from segsvc.io.modelfolder import INT8_QDQ_FILE, graph_path
from segsvc.models.export import export_onnx
from segsvc.models.serialization import load_model
from segsvc.runtime.cpu import cpu_description
from segsvc.runtime.onnxruntime_engine import OnnxRuntimeEngine as OnnxBackend
from segsvc.runtime.openvino_engine import OpenVinoEngine
from segsvc.runtime.quantize import FLOAT_NODES, calibration_images, quantize_onnx
from segsvc.training.datamodule import default_data_root

from bench_engines import interleaved  # benchmarks/, this script's folder: interleaved rounds, medians

ENCODER, DECODER = "/encoder/features.{}/", "/decoder/stages.{}/"
VARIANTS = {
    "all-int8": (),
    "features.0": (ENCODER.format(0),),
    "features.0-1": tuple(ENCODER.format(i) for i in range(2)),
    "features.0-1 + decoder.2-3": (*(ENCODER.format(i) for i in range(2)), DECODER.format(2), DECODER.format(3)),
    "features.0-2": tuple(ENCODER.format(i) for i in range(3)),
    "features.0-3": tuple(ENCODER.format(i) for i in range(4)),
    "features.0-2 + decoder.3": (*(ENCODER.format(i) for i in range(3)), DECODER.format(3)),  # shipped before
    "features.0-2 + decoder.2-3": (*(ENCODER.format(i) for i in range(3)), DECODER.format(2), DECODER.format(3)),
    "features.0-3 + decoder.2-3": (*(ENCODER.format(i) for i in range(4)), DECODER.format(2), DECODER.format(3)),
    "shipped": FLOAT_NODES,  # features.0-2 + decoder.1-3
}

TIMED_SHAPE, TIMED_ROUNDS = (1, 3, 384, 480), 15


def against_openvino(path: Path, openvino: OpenVinoEngine) -> str:
    """ONNX Runtime's median ms on `path` at 1 thread, and its ratio to `openvino`'s, timed in turns."""
    batch = np.random.default_rng(0).random(TIMED_SHAPE, dtype=np.float32)
    medians = interleaved({"ort": OnnxBackend(path, threads=1), "openvino": openvino}, batch, TIMED_ROUNDS)
    return f" {medians['ort'] * 1e3:.1f} ms | {medians['ort'] / medians['openvino']:.2f}x |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--root", default=str(default_data_root() / "camvid"), help="CamVid-layout folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of the split")
    parser.add_argument("--time", action="store_true", help="also time each variant against OpenVINO int8 + bf16")
    args = parser.parse_args()
    openvino = None
    if args.time:
        print(cpu_description())
        openvino = OpenVinoEngine(graph_path(args.model, INT8_QDQ_FILE), threads=1, precision="bf16")
    model, root = load_model(args.model), Path(args.root)
    ignore = model.ignore_index if model.ignore_index is not None else CAMVID_IGNORE_INDEX
    with tempfile.TemporaryDirectory() as tmp:
        images, masks = root / args.split, root / f"{args.split}annot"
        if args.limit:  # a folder of links to the first N pairs
            images, masks = Path(tmp) / "images", Path(tmp) / "masks"
            for folder, source in ((images, root / args.split), (masks, root / f"{args.split}annot")):
                folder.mkdir()
                for path in sorted(source.iterdir())[: args.limit]:
                    (folder / path.name).symlink_to(path.resolve())
        fp32_path = export_onnx(model, Path(tmp) / "fp32.onnx")
        fp32 = OnnxBackend(fp32_path, threads=2)
        score = evaluate_folder(fp32, images, masks, model.num_classes, ignore)["miou"]
        print(f"fp32 mIoU {score:.4f} on {args.split}\n")
        timed = " ONNX Runtime, 1 thread, 384x480 | vs OpenVINO int8 + bf16 compiled |" if openvino else ""
        print("| float layers | mIoU | agreement with fp32: mean / worst image |" + timed)
        print("|---|---|---|" + ("---|---|" if openvino else ""))
        files = calibration_images(root / "train", 32)
        for name in args.variants:
            path = quantize_onnx(fp32_path, Path(tmp) / "int8.onnx", files, float_nodes=VARIANTS[name])
            result = evaluate_folder(OnnxBackend(path, threads=2), images, masks, model.num_classes, ignore, reference=fp32)
            agreement = result["agreement"]
            speed = against_openvino(path, openvino) if openvino else ""
            print(f"| {name} | {result['miou']:.4f} | {np.mean(agreement):.1%} / {min(agreement):.1%} |{speed}", flush=True)


if __name__ == "__main__":
    main()
