"""One training step of the CPU recipe's batch (8 crops of 256x256, 11 classes, channels_last) for each loss and
frozen_stages setting, in one process: forward, backward and AdamW step, medians, ratios against the first row
measured in the same rounds. It first prints the CPU.

    python benchmarks/bench_train_step.py                 # 2 threads (torch's default on 2 cores), 7 rounds
    python benchmarks/bench_train_step.py --rounds 15 --threads 1

Random images and masks: the time of a step does not depend on what they show. The rows alternate round by
round, so a busy minute slows them all alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
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


def stepper(images: torch.Tensor, masks: torch.Tensor, **settings):
    """A function that runs one training step of a fresh module with `settings` and returns its seconds."""
    torch.manual_seed(0)
    module = SegmentationModule(num_classes=11, ignore_index=11, encoder_weights=None, channels_last=True, **settings)
    module.log = lambda *args, **kwargs: None  # no Trainer to log to
    module.train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], 1e-3)

    def step() -> float:
        start = time.perf_counter()
        module.training_step((images, masks), 0).backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    images, masks = torch.randn(8, 3, 256, 256), torch.randint(0, 11, (8, 256, 256))
    steps = {name: stepper(images, masks, **settings) for name, settings in SETTINGS.items()}
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
