"""Every engine and precision of a model folder, and what backend auto picks, timed in one process: interleaved
rounds, medians, ratios against ONNX Runtime fp32 measured in the same rounds. It first prints the CPU: which
form wins depends on its instructions (AVX2; AVX-512 VNNI and BF16; AMX) more than on anything in the model.

    python benchmarks/bench_engines.py                         # the shipped default, 384x480, 1 and 2 threads
    python benchmarks/bench_engines.py --model DIR --rounds 41
    python benchmarks/bench_engines.py --miou ../shared/datasets/camvid --split test   # + each form's mIoU, per class

Auto's row is the form it chose on its own timing (at worker start in a service), timed again here beside the
others: "vs best" is its speed against the fastest eligible form in these same rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segsvc.io.modelfolder import DEFAULT_MODEL_DIR, read_accuracy, read_config  # noqa: E402
from segsvc.runtime import FORMS, load_runtime, unavailable  # noqa: E402
from segsvc.runtime.auto import ineligible  # noqa: E402
from segsvc.runtime.cpu import cpu_description  # noqa: E402

HEIGHT, WIDTH = 384, 480


def interleaved(runtimes: dict, batch: np.ndarray, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    for runtime in runtimes.values():
        runtime.run_batch(batch)  # OpenVINO compiles for the shape here
    for _ in range(rounds):
        for name, runtime in runtimes.items():
            start = time.perf_counter()
            runtime.run_batch(batch)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def miou_table(folder: Path, forms: list[str], data: Path, split: str, threads: int) -> None:
    """Each form's mIoU and per-class IoU on a CamVid-layout split at full resolution."""
    from segsvc.evaluation.evaluate import evaluate_folder

    config = read_config(folder)
    print(f"\n{split} split of {data}, full resolution ({threads} threads)")
    print("| form | mIoU | vs fp32 | " + " | ".join(config["class_names"]) + " |")
    print("|---" * (len(config["class_names"]) + 3) + "|")
    reference = None
    for name in forms:
        runtime = load_runtime(folder, name, threads)
        result = evaluate_folder(runtime, data / split, data / f"{split}annot", config["num_classes"], config["ignore_index"])
        reference = result["miou"] if reference is None else reference
        ious = " | ".join(f"{v:.3f}" for v in result["iou"])
        print(f"| {name} | {result['miou']:.4f} | {result['miou'] - reference:+.4f} | {ious} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--miou", type=Path, help="a CamVid-layout folder: each form's mIoU on --split")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.miou is not None and not (args.miou / args.split).is_dir():
        parser.error(f"--miou: no {args.split}/ in {args.miou}")
    print(cpu_description())
    records = read_accuracy(args.model)
    forms = [name for name, form in FORMS.items() if name != "torch" and unavailable(args.model, form) is None]
    for name in FORMS:
        if name not in forms and name != "torch":
            print(f"not measured: {name} ({unavailable(args.model, FORMS[name])})")
    batch = np.random.default_rng(0).standard_normal((1, 3, HEIGHT, WIDTH)).astype(np.float32)
    print(f"\nbatch 1x3x{HEIGHT}x{WIDTH}, {args.rounds} interleaved rounds, medians")
    print("| threads | form | eligible for auto | median ms | vs ORT fp32 | vs best eligible |")
    print("|---|---|---|---|---|---|")
    for threads in args.threads:
        runtimes = {name: load_runtime(args.model, name, threads) for name in forms}
        auto = load_runtime(args.model, "auto", threads)
        runtimes[f"auto: {auto.form.name}"] = auto
        medians = interleaved(runtimes, batch, args.rounds)
        eligible = {name: medians[name] for name in forms if ineligible(FORMS[name], records) is None}
        base, best = medians["onnxruntime"], min(eligible.values())
        for name, seconds in medians.items():
            verdict = "(auto)" if name.startswith("auto") else "yes" if name in eligible else "no"
            print(f"| {threads} | {name} | {verdict} | {seconds * 1e3:.1f} | {base / seconds:.2f}x | {best / seconds:.2f}x |")
    if args.miou is not None:
        eligible_forms = [name for name in forms if ineligible(FORMS[name], records) is None]
        miou_table(args.model, eligible_forms, args.miou, args.split, max(args.threads))


if __name__ == "__main__":
    main()
