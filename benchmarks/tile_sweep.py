"""Tile size and overlap for large images: agreement with whole-image inference, and time and memory on 39 MP.

    python benchmarks/tile_sweep.py                                   # the defaults against 768/192
    python benchmarks/tile_sweep.py --tiles 896/128 960/128 1024/256 --rounds 3

Agreement: the tiled mask against the whole-image mask (ONNX Runtime fp32, the shipped default) on the
2048x2048 CamVid mosaic that tests/runtime/test_tiling.py uses, a 4096x3072 one, and two CamVid test photos
upscaled to 2048x2048 (objects 4x their training size). Time: `predict_mask` on a 7200x5400 upscaled photo (the issue's image),
1 thread, in a second thread as the service runs it, settings taking turns round by round; with each run
the rise of this process's resident memory above where it started. Start Python with
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 to match the service (it sets that for its workers). Noisy machines:
compare settings within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segsvc.data.samples import photo_mosaic  # noqa: E402
from segsvc.io.modelfolder import DEFAULT_MODEL_DIR  # noqa: E402
from segsvc.runtime import load_runtime  # noqa: E402
from segsvc.runtime.predict import TILE_OVERLAP, TILE_SIZE, predict_mask  # noqa: E402
from segsvc.runtime.tiling import tile_starts  # noqa: E402

CAMVID = Path(os.environ.get("SEGSVC_SHARED", ROOT.parent / "shared")) / "datasets" / "camvid_mini"
WHOLE = 10**12  # a `tile_above` no image reaches: the whole-image path


def resident() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed_in_thread(run) -> tuple[float, int]:
    """Seconds `run` takes in a second thread, and the peak rise of resident memory meanwhile."""
    start_rss, peak, done = resident(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident() - start_rss)
            time.sleep(0.01)

    sampler, worker = threading.Thread(target=sample), threading.Thread(target=run)
    sampler.start()
    start = time.perf_counter()
    worker.start()
    worker.join()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return seconds, peak[0]


def tile_setting(text: str) -> tuple[int, int]:
    """'SIZE/OVERLAP' -> (size, overlap), refused as `predict_mask` would refuse it."""
    try:
        size, overlap = (int(v) for v in text.split("/"))
        tile_starts(size + 1, size, overlap)  # the library's own check: multiples of 32, overlap < size
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SIZE/OVERLAP, multiples of 32, overlap < size ({error})") from None
    return size, overlap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", nargs="+", type=tile_setting, default=[(TILE_SIZE, TILE_OVERLAP), (768, 192)], help="SIZE/OVERLAP")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds on the 39 MP image (0: agreement only)")
    args = parser.parse_args()
    if args.rounds < 0:
        parser.error("--rounds must be 0 or more")
    settings = args.tiles
    backend = load_runtime(DEFAULT_MODEL_DIR, "onnxruntime", threads=1)
    photos = sorted((CAMVID / "test").iterdir())[:2]

    mosaic = sorted(p for p in CAMVID.glob("*/*.png") if "annot" not in p.parent.name)  # as tests/conftest.py's camvid_mosaic
    images = {"2048 mosaic": photo_mosaic(mosaic, 2048, 2048), "4096x3072 mosaic": photo_mosaic(mosaic, 4096, 3072)}
    for path in photos:
        images[f"{path.stem} at 2048x2048"] = np.asarray(Image.open(path).convert("RGB").resize((2048, 2048), Image.BICUBIC))
    print("| tiles | " + " | ".join(images) + " |")
    print("|---" * (len(images) + 1) + "|")
    wholes = {name: predict_mask(backend, image, tile_above=WHOLE) for name, image in images.items()}
    for size, overlap in settings:
        agreement = [(predict_mask(backend, image, size, overlap, tile_above=0) == wholes[name]).mean() for name, image in images.items()]
        print(f"| {size}/{overlap} | " + " | ".join(f"{a:.2%}" for a in agreement) + " |", flush=True)
    if not args.rounds:
        return

    big = np.asarray(Image.open(photos[0]).convert("RGB").resize((7200, 5400), Image.BICUBIC))
    seconds: dict[tuple[int, int], list[float]] = {s: [] for s in settings}
    peaks: dict[tuple[int, int], list[int]] = {s: [] for s in settings}
    for _ in range(args.rounds):
        for size, overlap in settings:
            took, peak = timed_in_thread(lambda: predict_mask(backend, big, size, overlap))
            seconds[(size, overlap)].append(took)
            peaks[(size, overlap)].append(peak)
    print(f"\n7200x5400, {args.rounds} rounds, ONNX Runtime 1 thread")
    print("| tiles | median s | each round | peak RSS rise |")
    print("|---|---|---|---|")
    for setting in settings:
        rounds = " / ".join(f"{s:.1f}" for s in seconds[setting])
        print(f"| {setting[0]}/{setting[1]} | {statistics.median(seconds[setting]):.2f} | {rounds} | {max(peaks[setting]) / 1e9:.2f} GB |")


if __name__ == "__main__":
    main()
