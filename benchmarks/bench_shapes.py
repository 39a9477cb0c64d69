"""A stream of images that each have their own size, against the same images at one size, over HTTP.

    python benchmarks/bench_shapes.py                          # the service as `make serve` runs it (auto)
    python benchmarks/bench_shapes.py --backend openvino-int8  # one form
    python benchmarks/bench_shapes.py --photos DIR             # also your own photos (JPEG, PNG), any sizes

The stream: CamVid test frames cropped and scaled to many sizes (200x150 up to 1280x960, landscape and
portrait; about 40 distinct shapes after padding to the 32-pixel grid) and the photos in ../shared/images,
as JPEGs, posted one after another to a real `bentoml serve` (2 workers). The same images resized to one
size (640x480) are the reference. Each stream is posted `--passes` times, alternately (mixed, one size,
mixed, ...): later passes show what repeats cost. The figure is time per megapixel, mixed over one size.
The server starts with an empty OpenVINO model cache (a new machine's first day); `--keep-cache` reuses
~/.cache/segsvc/openvino, as a restarted service does.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import free_port, start_server, stop_server, wait_ready  # noqa: E402

from segsvc.models.inputs import MULTIPLE  # noqa: E402
from segsvc.models.sizes import padded_size  # noqa: E402
from segsvc.runtime.cpu import cpu_description  # noqa: E402

ONE_SIZE = (640, 480)  # width, height


def mixed_images(shared: Path, count: int, photos: Path | None, seed: int = 0) -> list[Image.Image]:
    """`count` images of many sizes: CamVid test crops, scaled, plus real photos."""
    rng = np.random.default_rng(seed)
    frames = sorted((shared / "datasets/camvid/test").glob("*.png"))
    images = [Image.open(p).convert("RGB") for p in sorted((shared / "images").glob("*.png"))]
    if photos is not None:
        images += [Image.open(p).convert("RGB") for p in sorted(photos.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    while len(images) < count:
        frame = Image.open(frames[int(rng.integers(len(frames)))]).convert("RGB")
        width, height = int(rng.integers(160, 481)), int(rng.integers(120, 361))
        left, top = int(rng.integers(0, 481 - width)), int(rng.integers(0, 361 - height))
        crop = frame.crop((left, top, left + width, top + height))
        scale = float(rng.choice([1.0, 1.0, 1.5, 2.0, 2.5]))
        if rng.random() < 0.3:  # portrait
            crop = crop.rotate(90, expand=True)
        images.append(crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.BILINEAR))
    return images[:count]


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def post_all(port: int, bodies: list[bytes]) -> float:
    """Seconds to POST every body to /segment, one after another, on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    start = time.perf_counter()
    for body in bodies:
        connection.request("POST", "/segment", body=body, headers={"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"POST /segment answered {response.status}")
    return time.perf_counter() - start


def padded_shape(image: Image.Image) -> tuple[int, int]:
    return padded_size(image.height, MULTIPLE), padded_size(image.width, MULTIPLE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default=None, help="SEGSVC_BACKEND for the server (default: its own, auto)")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--photos", type=Path, default=None, help="a folder of your own photos to add")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to serve (e.g. an older release)")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--keep-cache", action="store_true", help="reuse the OpenVINO model cache (default: an empty one)")
    args = parser.parse_args()
    if not args.keep_cache:
        os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="bench-shapes-cache-")
    shared = Path(os.environ.get("SEGSVC_SHARED", ROOT.parent / "shared"))
    print(cpu_description())
    images = mixed_images(shared, args.images, args.photos)
    mixed = [jpeg(image) for image in images]
    one_size = [jpeg(image.resize(ONE_SIZE, Image.BILINEAR)) for image in images]
    mixed_mp = sum(image.width * image.height for image in images) / 1e6
    one_mp = len(images) * ONE_SIZE[0] * ONE_SIZE[1] / 1e6
    shapes = {padded_shape(image) for image in images}
    print(f"{len(images)} images, {len(shapes)} distinct shapes after padding, {mixed_mp:.1f} MP; one size {ONE_SIZE[0]}x{ONE_SIZE[1]}, {one_mp:.1f} MP")
    port = free_port()
    server = start_server(args.repo.resolve(), port, args.backend)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        post_all(port, [one_size[0], mixed[0]])  # connections and first-request allocations
        print("| pass | mixed s | mixed ms/MP | one size s | one size ms/MP | mixed / one size, per MP |")
        print("|---|---|---|---|---|---|")
        for index in range(1, args.passes + 1):
            mixed_s = post_all(port, mixed)
            one_s = post_all(port, one_size)
            ratio = (mixed_s / mixed_mp) / (one_s / one_mp)
            print(f"| {index} | {mixed_s:.1f} | {1e3 * mixed_s / mixed_mp:.0f} | {one_s:.1f} | {1e3 * one_s / one_mp:.0f} | **{ratio:.2f}x** |")
        import requests

        info = requests.get(f"http://127.0.0.1:{port}/model", timeout=10).json()
        why = f"{info.get('chosen_by')}: {info['why']}" if info.get("why") else info.get("chosen_by")
        print(f"served: {info.get('form')} ({why}); new shapes: {info.get('new_shapes')}")
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
