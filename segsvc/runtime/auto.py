"""Backend "auto": time the forms this CPU can run, as a service meets images, and keep the best eligible one.

Each form is timed twice: on one size, repeated (a camera's frames; OpenVINO's graph compiled for it), and
on a few sizes it has not seen (real uploads; what a new shape costs, compile stall or not). The form kept is
the one whose worse ratio to the fastest of the two timings is least, so that neither kind of traffic is
served at much less than the best speed this CPU has.

Any fp32 form is eligible. A reduced-precision form (bf16, int8) is eligible only with an accuracy record
for the folder's weights (`accuracy.json`, written by `segsvc quantize` / `segsvc accuracy`) in which its
masks agree with fp32's on at least `MIN_AGREEMENT` of the calibration pixels, and on every image at least
`MIN_WORST_AGREEMENT`: speed never buys a model that says something else. The PyTorch form is not weighed:
it needs the training stack, and the graph engines run the same model faster.

`decide` times in a child process (`python -m segsvc.runtime.auto FOLDER`) and `from_decision` loads only
the winner: a service decides once, before its workers start, so that every worker serves the same form (a
mask must not depend on which worker took the request), and each worker holds one engine's libraries and
graph, not every engine's (70 MB less resident with OpenVINO bf16). How these came about:
docs/measurements/engines.md.
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
# Sizes a service meets after its warm-up: a phone photo scaled down (landscape and portrait), a square crop.
NEW_SIZES = ((352, 640), (640, 480), (448, 448))


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
        if hasattr(engine, "prepare"):  # OpenVINO: compiled for the shape, as a service's warm-up does
            engine.prepare(tuple(sample.shape))
        engine.run_batch(sample)  # first-run allocations
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            start = time.perf_counter()
            engine.run_batch(sample)
            times[name].append(time.perf_counter() - start)
    return {name: round(1e3 * statistics.median(values), 2) for name, values in times.items()}


def time_new_shapes(engines: dict[str, object], sizes: tuple[tuple[int, int], ...] = NEW_SIZES) -> dict[str, float]:
    """ms per megapixel of each engine over one first run at each of `sizes` (new to it), interleaved."""
    spent = dict.fromkeys(engines, 0.0)
    for height, width in sizes:
        batch = preprocess(np.zeros((height, width, 3), np.uint8))
        for name, engine in engines.items():
            start = time.perf_counter()
            engine.run_batch(batch)
            spent[name] += time.perf_counter() - start
    megapixels = sum(h * w for h, w in sizes) / 1e6
    return {name: round(1e3 * seconds / megapixels, 2) for name, seconds in spent.items()}


def weigh(folder: str | Path, threads: int | None = None, sample: np.ndarray | None = None) -> tuple[dict[str, object], dict[str, dict[str, float]], dict[str, str]]:
    """Load every eligible form as a service runs it and time it: (engines, {"one_size": median ms by form,
    "new_sizes": ms per megapixel by form}, why others were skipped)."""
    records = read_accuracy(folder)
    skipped: dict[str, str] = {}
    engines: dict[str, object] = {}
    for name, form in FORMS.items():
        if form.engine == "torch":
            continue
        why = unavailable(folder, form) or ineligible(form, records)
        if why is None:
            try:
                engines[name] = load_form(folder, form, threads, shape_free=True)
            except ValueError as error:  # a stale graph: name it, serve another form
                why = str(error)
        if why is not None:
            skipped[name] = why
    if not engines:
        raise ValueError(f"no backend can serve {folder}: " + "; ".join(f"{name}: {why}" for name, why in skipped.items()))
    if len(engines) == 1:
        return engines, {}, skipped
    new_sizes = time_new_shapes(engines)  # first: before the warm-up frame's shape is compiled
    one_size = time_engines(engines, warm_up_batch() if sample is None else sample)
    return engines, {"one_size": one_size, "new_sizes": new_sizes}, skipped


def fastest(engines: dict[str, object], timings: dict[str, dict[str, float]]) -> tuple[str, str]:
    """The form whose larger ratio to the fastest (on one size, on new sizes) is smallest; and why, in words.
    The only form when a single one was loaded (and not timed)."""
    if not timings:
        return next(iter(engines)), "the only eligible form"
    ratios = {
        name: {kind: times[name] / min(times.values()) for kind, times in timings.items()} for name in timings["one_size"]
    }
    best = min(ratios, key=lambda name: (max(ratios[name].values()), ratios[name]["one_size"]))
    one, new = ratios[best]["one_size"], ratios[best]["new_sizes"]
    why = (
        f"{best}: {timings['one_size'][best]} ms on one size ({one:.2f}x the fastest form), "
        f"{timings['new_sizes'][best]} ms per megapixel on {len(NEW_SIZES)} new sizes ({new:.2f}x the fastest): "
        "of the forms timed, its larger ratio is the smallest"
    )
    return best, why


def choose(folder: str | Path, threads: int | None = None, sample: np.ndarray | None = None) -> Runtime:
    """The fastest eligible form on `sample` (default: the warm-up frame), timed in this process."""
    engines, timings, skipped = weigh(folder, threads, sample)
    best, why = fastest(engines, timings)
    runtime = Runtime(engines.pop(best), FORMS[best], "auto", timings, skipped, why)
    engines.clear()  # the others' sessions and compiled graphs go now, and their memory back to the OS
    return_memory_to_os()
    return runtime


def decide(folder: str | Path, threads: int | None = None) -> dict:
    """{"best", "why", "timings_ms", "skipped"}: the forms timed (`weigh`) in a child process."""
    command = [sys.executable, "-m", "segsvc.runtime.auto", str(folder), *(["--threads", str(threads)] if threads else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # this process's segsvc
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        raise ValueError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"{command} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def from_decision(folder: str | Path, decision: dict, threads: int | None = None) -> Runtime:
    """The runtime `decide` chose, loaded alone, as a service runs it (any size, `load_form`'s shape_free)."""
    best = decision["best"]
    engine = load_form(folder, FORMS[best], threads, shape_free=True)
    return Runtime(engine, FORMS[best], "auto", decision["timings_ms"], decision["skipped"], decision["why"])


def main() -> None:
    parser = argparse.ArgumentParser(description="time a model folder's eligible forms; print the fastest as JSON")
    parser.add_argument("folder")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    try:
        engines, timings, skipped = weigh(args.folder, args.threads)
    except ValueError as error:
        sys.exit(f"segsvc: {error}")
    best, why = fastest(engines, timings)
    print(json.dumps({"best": best, "why": why, "timings_ms": timings, "skipped": skipped}))


if __name__ == "__main__":
    main()
