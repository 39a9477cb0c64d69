"""configs/camvid.yaml on a lent GPU inside a fixed wall-clock budget, two runs side by side.

    python scripts/gpu_fit.py --data .gpu/camvid --weights .gpu/weights/mobilenet_v2_imagenet.safetensors \
        --budget 480 --out $OUT

- `train`: the recipe on train only; its val curve is how the recipe is judged (never test).
- `trainval`: the same recipe and schedule on train+val (468 images), the model to ship if it is better.

A short probe of both runs (a few epochs, concurrently, as the real runs will share the GPU and the CPU
cores) measures the epoch time; the schedule (`max_epochs`, which sizes the cosine learning rate) is then
the most epochs that fit the budget, the same for both runs. Each run's CSV log and its last checkpoint
(weights and hyperparameters only, no optimiser state) are copied to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RUNS = {"train": ["--data.init_args.train_splits", "[train]"], "trainval": ["--data.init_args.train_splits", "[train, val]"]}


def command(name: str, root: Path, epochs: int, workers: int, args: argparse.Namespace, extra: list[str]) -> list[str]:
    init = ["--model.init_model", args.init[list(RUNS).index(name)]] if args.init else []
    return [
        sys.executable, "-m", "segsvc.training.cli", "fit", "--config", args.config,
        "--data.init_args.root", args.data, "--model.encoder_weights", args.weights or "null",
        "--data.init_args.num_workers", str(workers), "--trainer.max_epochs", str(epochs),
        "--trainer.default_root_dir", str(root / name),
        "--trainer.logger", "pytorch_lightning.loggers.CSVLogger", "--trainer.logger.init_args.save_dir", str(root / name),
        "--trainer.enable_progress_bar", "false",
        *RUNS[name], *init, *args.extra, *extra,
    ]  # fmt: skip


def launch(root: Path, epochs: int, args: argparse.Namespace, extra: list[str] = ()) -> dict[str, subprocess.Popen]:
    procs = {}
    for name, workers in zip(RUNS, args.workers):
        (root / name).mkdir(parents=True, exist_ok=True)
        with open(root / f"{name}.log", "w") as log:  # the child keeps its own copy of the descriptor
            procs[name] = subprocess.Popen(command(name, root, epochs, workers, args, list(extra)), stdout=log, stderr=subprocess.STDOUT)
    return procs


def wait(procs: dict[str, subprocess.Popen], deadline: float) -> dict[str, int | None]:
    while any(p.poll() is None for p in procs.values()) and time.time() < deadline:
        time.sleep(1)
    for p in procs.values():
        if p.poll() is None:  # out of time: Lightning stops on SIGINT; last.ckpt is the last finished epoch
            p.send_signal(signal.SIGINT)
    for p in procs.values():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    return {name: p.returncode for name, p in procs.items()}


def metrics_file(run_dir: Path) -> Path | None:
    """The CSV log of the run's latest version, or None before it wrote one."""
    files = sorted(run_dir.glob("lightning_logs/version_*/metrics.csv"))
    return files[-1] if files else None


def metrics(run_dir: Path) -> list[dict[str, str]]:
    import csv

    if (path := metrics_file(run_dir)) is None:
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key)]


def strip_checkpoint(src: Path, dst: Path) -> None:
    checkpoint = torch.load(src, map_location="cpu", weights_only=False)
    keep = ("state_dict", "hyper_parameters", "epoch", "global_step", "pytorch-lightning_version")
    torch.save({k: checkpoint[k] for k in keep if k in checkpoint}, dst)


def probe_schedule(args: argparse.Namespace, root: Path, out: Path, start: float, deadline: float, summary: dict) -> int:
    """The most epochs that fit before `deadline`, from a few epochs of both runs side by side."""
    probe = launch(root / "probe", args.probe_epochs, args, ["--trainer.check_val_every_n_epoch", "2"])
    codes = wait(probe, deadline)
    probe_seconds = time.time() - start
    epoch_s = {name: column(metrics(root / "probe" / name), "time/epoch_s") for name in RUNS}
    summary["probe"] = {"seconds": round(probe_seconds, 1), "exit": codes, "epoch_s": epoch_s}
    print(json.dumps(summary), flush=True)
    if any(codes.values()) or not all(epoch_s.values()):
        for name in RUNS:
            shutil.copy(root / "probe" / f"{name}.log", out / f"probe_{name}.log")
        sys.exit("probe failed: see probe_*.log")
    # The slower run (trainval) sizes the schedule; startup, validation every 5 epochs and checkpoints are
    # paid for by the probe's own overhead and a 30% margin on the steady epoch time.
    steady = statistics.median(epoch_s["trainval"][1:] or epoch_s["trainval"])
    overhead = probe_seconds - sum(epoch_s["trainval"])
    epochs = int((deadline - time.time() - overhead) / (steady * 1.3))
    epochs = max(5, min(args.max_epochs, epochs - epochs % 5))
    print(f"schedule: {epochs} epochs (steady epoch {steady:.2f} s, overhead {overhead:.0f} s)", flush=True)
    return epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/camvid.yaml")
    parser.add_argument("--data", required=True)
    parser.add_argument("--weights", default=None, help="ImageNet encoder weights (not needed with --init)")
    parser.add_argument("--budget", type=float, default=480, help="seconds for everything, probe included")
    parser.add_argument("--probe-epochs", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=None, help="a fixed schedule: no probe")
    parser.add_argument("--init", nargs=2, default=None, help="warm start: model folders for train, trainval")
    parser.add_argument("--workers", type=int, nargs=2, default=(6, 8), help="DataLoader workers: train, trainval")
    parser.add_argument("--root", default="runs/gpu")
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/gpu/out"))
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more overrides for both runs")
    args = parser.parse_args()
    start = time.time()
    deadline = start + args.budget - 25  # room to copy the results
    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "cpus": os.cpu_count()}

    epochs = args.epochs or probe_schedule(args, root, out, start, deadline, summary)
    summary["epochs"] = epochs

    run_start = time.time()
    summary["exit"] = wait(launch(root, epochs, args), deadline)
    summary["seconds"] = round(time.time() - run_start, 1)
    for name in RUNS:
        rows = metrics(root / name)
        summary[name] = {
            "epoch_s_median": statistics.median(column(rows, "time/epoch_s") or [0]),
            "images_per_s_median": statistics.median(column(rows, "time/images_per_s") or [0]),
            "val_miou_last": (column(rows, "val/miou") or [None])[-1],
            "val_miou_best": max(column(rows, "val/miou") or [0]),
        }
        if (path := metrics_file(root / name)) is not None:
            shutil.copy(path, out / f"{name}_metrics.csv")
        shutil.copy(root / f"{name}.log", out / f"{name}.log")
        last = root / name / "checkpoints" / "last.ckpt"
        if last.exists():
            strip_checkpoint(last.resolve(), out / f"{name}_last.ckpt")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
