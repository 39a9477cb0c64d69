"""One very large image through the real service: worker peak memory, time per pixel, memory given back.

    python benchmarks/bench_large.py                 # a 7200x5400 JPEG (39 MP) against 480x360 requests, 3 rounds
    python benchmarks/bench_large.py --quick         # 2400x1800 and fewer small requests: checks that it works

Starts `bentoml serve` of this checkout (its default backend auto, or --backend; one worker, one thread). Each of
`--rounds` rounds posts `--small` 480x360 CamVid PNGs one at a time, then the large JPEG (a CamVid
photograph upscaled), while a thread polls the resident memory of every process of the server; a last
batch of small requests closes the run. Each large request is compared with the small batches just
before and after it, so that a machine that speeds up or slows down during the run moves both sides.
Targets: worker peak RSS <= 1.0 GB, large-image time per pixel <= 1.5x the small requests' (the median
round), and RSS back within 200 MB of idle afterwards. Timings on a shared machine are
noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CAMVID = Path(os.environ.get("SEGSVC_SHARED", ROOT.parent / "shared")) / "datasets" / "camvid_mini"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: str, port: int, settings: dict[str, str]) -> subprocess.Popen:
    """`bentoml serve` of this checkout on `port`, its store in `home`, `settings` (SEGSVC_...) in its environment."""
    env = {**os.environ, "BENTOML_HOME": home, "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT), **settings}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "bentoml"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def tree_rss(pid: int) -> dict[int, int]:
    """Resident bytes of `pid` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    rss, todo = {}, [pid]
    while todo:
        current = todo.pop()
        try:
            rss[current] = int((Path("/proc") / str(current) / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError):
            continue
        todo += children.get(current, [])
    return rss


def worker_rss(pid: int) -> int:
    """The largest process of the server: the worker holding the model."""
    return max(tree_rss(pid).values(), default=0)


class PeakSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.running = pid, every, 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, worker_rss(self.pid))
            time.sleep(self.every)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


def post(port: int, body: bytes, content_type: str) -> tuple[float, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    start = time.perf_counter()
    connection.request("POST", "/segment", body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise SystemExit(f"POST /segment answered {response.status}: {data[:300]!r}")
    return elapsed, data


def large_jpeg(width: int, height: int) -> bytes:
    photo = Image.open(sorted((CAMVID / "test").iterdir())[0]).convert("RGB").resize((width, height), Image.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=7200)
    parser.add_argument("--height", type=int, default=5400)
    parser.add_argument("--small", type=int, default=100, help="480x360 requests for the per-pixel baseline")
    parser.add_argument("--rounds", type=int, default=3, help="large requests, each between two small batches")
    parser.add_argument("--quick", action="store_true", help="2400x1800, 10 small requests, 1 round")
    parser.add_argument("--backend", default="auto", help="SEGSVC_BACKEND (default: auto)")
    args = parser.parse_args()
    if args.quick:
        args.width, args.height, args.small, args.rounds = 2400, 1800, 10, 1
    if args.rounds < 1 or args.small < 1:
        parser.error("--rounds and --small must be at least 1")
    smalls = [p.read_bytes() for p in sorted((CAMVID / "test").iterdir()) + sorted((CAMVID / "val").iterdir())]
    big = large_jpeg(args.width, args.height)
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        server = start_server(home, port, {"SEGSVC_WORKERS": "1", "SEGSVC_THREADS": "1", "SEGSVC_BACKEND": args.backend})
        try:
            deadline = time.time() + 600
            while True:
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit("bentoml serve did not become ready; run `make serve` to see why")
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    connection.request("GET", "/readyz")
                    if connection.getresponse().status == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/model")
            served = json.loads(connection.getresponse().read())
            for body in smalls[:4]:
                post(port, body, "image/png")  # warm: the first requests' allocations
            time.sleep(1)
            idle = worker_rss(server.pid)

            def small_batch() -> float:
                """Seconds per pixel of `--small` 480x360 requests."""
                seconds = sum(post(port, smalls[i % len(smalls)], "image/png")[0] for i in range(args.small))
                return seconds / (args.small * 480 * 360)

            small_per_pixel, large_seconds, peaks, after = [small_batch()], [], [], []
            for _ in range(args.rounds):
                sampler = PeakSampler(server.pid)
                sampler.start()
                seconds, data = post(port, big, "image/jpeg")
                peaks.append(sampler.stop())
                large_seconds.append(seconds)
                assert Image.open(io.BytesIO(data)).size == (args.width, args.height)
                time.sleep(2)
                after.append(worker_rss(server.pid))
                small_per_pixel.append(small_batch())
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    pixels = args.width * args.height
    ratios = [t / pixels / ((before + later) / 2) for t, before, later in zip(large_seconds, small_per_pixel, small_per_pixel[1:])]
    ratio, peak, gb = statistics.median(ratios), max(peaks), 1e9
    small_ms = [p * 480 * 360 * 1e3 for p in small_per_pixel]
    print(served["cpu"])
    print(f"large image {args.width}x{args.height} JPEG, {len(big) / 1e6:.1f} MB; {served['form']}, 1 worker x 1 thread; {args.rounds} rounds")
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| worker RSS idle (after warm-up) | {idle / gb:.2f} GB | |")
    print(f"| worker peak RSS during the large requests | {peak / gb:.2f} GB ({' / '.join(f'{p / gb:.2f}' for p in peaks)}) | <= 1.0 GB: {'met' if peak <= 1.0 * gb else 'NOT met'} |")
    print(f"| worker RSS 2 s after each | {' / '.join(f'{a / gb:.2f}' for a in after)} GB (most +{(max(after) - idle) / 1e6:.0f} MB) | <= idle + 200 MB: {'met' if max(after) - idle <= 200e6 else 'NOT met'} |")
    print(f"| 480x360 requests, one at a time, ms each ({args.small} per batch) | {' / '.join(f'{m:.0f}' for m in small_ms)} | |")
    print(f"| large requests | {' / '.join(f'{t:.2f}' for t in large_seconds)} s | |")
    print(f"| time per pixel, large / small (each round) | {' / '.join(f'{r:.2f}' for r in ratios)} | |")
    print(f"| time per pixel, large / small (median) | {ratio:.2f} | <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'} |")


if __name__ == "__main__":
    main()
