"""One training step of the CPU recipe's batch (8 crops of 256x256, 11 classes, channels_last) for each loss and
frozen_stages setting, in one process: forward, backward and AdamW step, medians, ratios against the first row
measured in the same rounds. It first prints the CPU.

    python benchmarks/bench_train_step.py                 # 2 threads (torch's default on 2 cores), 7 rounds
    python benchmarks/bench_train_step.py --rounds 15 --threads 1
    python benchmarks/bench_train_step.py --rounds 10 --loss-from 78b440c   # + a row with that commit's OHEM

Random images and masks: the time of a step does not depend on what they show. The rows alternate round by
round, so a busy minute slows them all alike.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import types
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segsvc.runtime.cpu import cpu_description  # noqa: E402
from segsvc.training.module import SegmentationModule  # noqa: E402

SETTINGS = {
    "cross-entropy": {"loss": "ce", "aux_weight": 0.0},
    "OHEM + auxiliary head": {"loss": "ohem", "aux_weight": 0.4},
    "OHEM + auxiliary head, frozen_stages 2": {"loss": "ohem", "aux_weight": 0.4, "frozen_stages": 2},
    "OHEM + auxiliary head, frozen_stages 3": {"loss": "ohem", "aux_weight": 0.4, "frozen_stages": 3},
}


def stepper(images: torch.Tensor, masks: torch.Tensor, ohem=None, **settings):
    """A function that runs one training step of a fresh module with `settings` and returns its seconds; `ohem`
    replaces the module's OHEM loss function during its steps."""
    torch.manual_seed(0)
    module = SegmentationModule(num_classes=11, ignore_index=11, encoder_weights=None, channels_last=True, **settings)
    module.log = lambda *args, **kwargs: None  # no Trainer to log to
    module.train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], 1e-3)

    namespace = sys.modules[SegmentationModule.__module__]
    default_ohem = namespace.ohem_cross_entropy

    def step() -> float:
        namespace.ohem_cross_entropy = ohem or default_ohem
        start = time.perf_counter()
        module.training_step((images, masks), 0).backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds = time.perf_counter() - start
        namespace.ohem_cross_entropy = default_ohem
        return seconds

    return step


def ohem_of(revision: str):
    """`ohem_cross_entropy` as training/losses.py defines it at a git revision of this repository."""
    source = subprocess.run(["git", "show", f"{revision}:training/losses.py"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    losses = types.ModuleType(f"losses_at_{revision}")
    exec(compile(source, f"{revision}:training/losses.py", "exec"), losses.__dict__)
    return losses.ohem_cross_entropy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--loss-from", metavar="REV", help="add a row: OHEM + auxiliary head with training/losses.py of this git revision")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    images, masks = torch.randn(8, 3, 256, 256), torch.randint(0, 11, (8, 256, 256))
    steps = {name: stepper(images, masks, **settings) for name, settings in SETTINGS.items()}
    if args.loss_from:
        steps[f"OHEM + auxiliary head, OHEM of {args.loss_from}"] = stepper(images, masks, ohem_of(args.loss_from), **SETTINGS["OHEM + auxiliary head"])
    for step in steps.values():
        step()  # first steps allocate
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(step())
    first = statistics.median(next(iter(times.values())))
    print("| step | s (median) | vs the first row |")
    print("|---|---|---|")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"| {name} | {median:.3f} | {median / first:.2f}x |")


if __name__ == "__main__":
    main()
