"""Backend "auto": time the forms this CPU can run on a sample input and keep the fastest eligible one.

Any fp32 form is eligible. A reduced-precision form (bf16, int8) is eligible only with an accuracy record
for the folder's weights (`accuracy.json`, written by `segsvc quantize` / `segsvc accuracy`) in which its
masks agree with fp32's on at least `MIN_AGREEMENT` of the calibration pixels, and on every image at least
`MIN_WORST_AGREEMENT`: speed never buys a model that says something else. The PyTorch form is not weighed:
it needs the training stack, and the graph engines run the same model faster.

`decide` times in a child process (`python -m segsvc.runtime.auto FOLDER`) and `from_decision` loads only
the winner: a service decides once, before its workers start, so that every worker serves the same form
(each timing for itself, two workers picked two forms 5% apart, and a request's mask depended on which
worker took it), and each worker holds one engine's libraries and graph, not every engine's (measured:
354 MB against 284 MB resident for OpenVINO bf16 alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from segsvc.io.modelfolder import read_accuracy
from segsvc.runtime.forms import FORMS, Form, Runtime, load_form, unavailable
from segsvc.runtime.predict import preprocess, return_memory_to_os

MIN_AGREEMENT = 0.98
MIN_WORST_AGREEMENT = 0.95
ROUNDS = 7
WARM_UP_FRAME = (360, 480)  # a CamVid frame (padded to 384x480): the service's warm-up input


def warm_up_batch() -> np.ndarray:
    return preprocess(np.zeros((*WARM_UP_FRAME, 3), np.uint8))


def ineligible(form: Form, records: dict[str, dict]) -> str | None:
    """Why `form` may not serve (no accuracy record, or too little agreement), or None."""
    if not form.reduced:
        return None
    record = records.get(form.name)
    if record is None:
        return "no accuracy record: run `segsvc accuracy MODEL --calibration DIR`"
    if record["agreement"] < MIN_AGREEMENT or record.get("worst", 1.0) < MIN_WORST_AGREEMENT:
        return f"agrees with fp32 on {100 * record['agreement']:.2f}% (worst image {100 * record.get('worst', 1.0):.2f}%), under {100 * MIN_AGREEMENT:.0f}% / {100 * MIN_WORST_AGREEMENT:.0f}%"
    return None


def time_engines(engines: dict[str, object], sample: np.ndarray, rounds: int = ROUNDS) -> dict[str, float]:
    """Median ms per run of each engine on `sample`, in interleaved rounds after one untimed run each."""
    for engine in engines.values():
        engine.run_batch(sample)  # OpenVINO compiles for the shape here; first-run allocations
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            start = time.perf_counter()
            engine.run_batch(sample)
            times[name].append(time.perf_counter() - start)
    return {name: round(1e3 * statistics.median(values), 2) for name, values in times.items()}


def weigh(folder: str | Path, threads: int | None = None, sample: np.ndarray | None = None) -> tuple[dict[str, object], dict[str, float], dict[str, str]]:
    """Load every eligible form, time them on `sample`: (engines, median ms by form, why others were skipped)."""
    records = read_accuracy(folder)
    skipped: dict[str, str] = {}
    engines: dict[str, object] = {}
    for name, form in FORMS.items():
        if form.engine == "torch":
            continue
        why = unavailable(folder, form) or ineligible(form, records)
        if why is None:
            try:
                engines[name] = load_form(folder, form, threads)
            except ValueError as error:  # a stale graph: name it, serve another form
                why = str(error)
        if why is not None:
            skipped[name] = why
    if not engines:
        raise ValueError(f"no backend can serve {folder}: " + "; ".join(f"{name}: {why}" for name, why in skipped.items()))
    timings = time_engines(engines, warm_up_batch() if sample is None else sample) if len(engines) > 1 else {}
    return engines, timings, skipped


def fastest(engines: dict[str, object], timings: dict[str, float]) -> str:
    """The form with the least median time; the only one when a single form was loaded (and not timed)."""
    return min(timings, key=timings.get) if timings else next(iter(engines))


def choose(folder: str | Path, threads: int | None = None, sample: np.ndarray | None = None) -> Runtime:
    """The fastest eligible form on `sample` (default: the warm-up frame), timed in this process."""
    engines, timings, skipped = weigh(folder, threads, sample)
    best = fastest(engines, timings)
    runtime = Runtime(engines.pop(best), FORMS[best], "auto", timings, skipped)
    engines.clear()  # the others' sessions and compiled graphs go now, and their memory back to the OS
    return_memory_to_os()
    return runtime


def decide(folder: str | Path, threads: int | None = None) -> dict:
    """{"best", "timings_ms", "skipped"}: the forms timed on the warm-up frame in a child process."""
    command = [sys.executable, "-m", "segsvc.runtime.auto", str(folder), *(["--threads", str(threads)] if threads else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # this process's segsvc
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        raise ValueError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"{command} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def from_decision(folder: str | Path, decision: dict, threads: int | None = None) -> Runtime:
    """The runtime `decide` chose, loaded alone."""
    best = decision["best"]
    return Runtime(load_form(folder, FORMS[best], threads), FORMS[best], "auto", decision["timings_ms"], decision["skipped"])


def main() -> None:
    parser = argparse.ArgumentParser(description="time a model folder's eligible forms; print the fastest as JSON")
    parser.add_argument("folder")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    try:
        engines, timings, skipped = weigh(args.folder, args.threads)
    except ValueError as error:
        sys.exit(f"segsvc: {error}")
    print(json.dumps({"best": fastest(engines, timings), "timings_ms": timings, "skipped": skipped}))


if __name__ == "__main__":
    main()
