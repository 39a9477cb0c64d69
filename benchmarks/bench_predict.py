"""Bulk prediction throughput: `segsvc predict` over a folder at 1 and 2 processes (DDP on CPU).

    python benchmarks/bench_predict.py                # 400 images (camvid_mini's 20, repeated in folders)
    python benchmarks/bench_predict.py --images 1000 --processes 1 2 4

Each configuration runs twice on a fresh output folder: the first run does the work, the second finds
every mask there and does none, so its time is the fixed cost (process start, DDP set-up, listing);
images/s = images / (first - second). Timings on a shared machine are noisy: read the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAMVID = Path(os.environ.get("SEGSVC_SHARED", ROOT.parent / "shared")) / "datasets" / "camvid_mini"


def run(input_dir: Path, output: Path, processes: int) -> float:
    distributed = ["--trainer.strategy", "ddp"] if processes > 1 else []
    command = [sys.executable, "-m", "segsvc.training.cli", "predict", "--model", "default", "--input", str(input_dir),
               "--output", str(output), "--trainer.accelerator", "cpu", "--trainer.devices", str(processes),
               "--trainer.enable_progress_bar", "false", *distributed]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    photos = sorted(p for p in CAMVID.glob("*/*.png") if "annot" not in p.parent.name)
    with tempfile.TemporaryDirectory() as tmp:
        input_dir = Path(tmp) / "in"
        for i in range(args.images):
            target = input_dir / f"part{i // 100:03d}" / f"{i:05d}_{photos[i % len(photos)].name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photos[i % len(photos)], target)
        print(f"`segsvc predict`, {args.images} CamVid images (480x360), default model, PyTorch on CPU")
        print("| processes | wall s | fixed cost s (rerun, nothing to do) | images/s | / 1 process |")
        print("|---|---|---|---|---|")
        base = None
        for processes in args.processes:
            output = Path(tmp) / f"out{processes}"
            wall = run(input_dir, output, processes)
            fixed = run(input_dir, output, processes)
            rate = args.images / max(wall - fixed, 1e-9)
            base = base or rate
            print(f"| {processes} | {wall:.1f} | {fixed:.1f} | {rate:.1f} | {rate / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
