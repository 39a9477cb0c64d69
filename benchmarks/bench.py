"""Speed of segsvc against its peers, measured in one process with interleaved runs (medians, not one timing).

    python benchmarks/bench.py                       # models: latency batch 1, images/s batch 8
    python benchmarks/bench.py --http --requests 200  # also the BentoML service over loopback HTTP
    python benchmarks/bench.py --skip-models --http --repo ../old --repo . --http-rounds 2   # two services, A B A B
    python benchmarks/bench.py --skip-models --http --url http://127.0.0.1:3000            # a server already up
    python benchmarks/bench.py --skip-models --parts  # encoder against decoder + head, ours and Linknet's
    BENCH_THREADS=1 python benchmarks/bench.py        # one thread, as each service worker runs

Timings on shared machines are noisy: read the ratio column (against smp Linknet("mobilenet_v2"), measured
in the same rounds), not the absolute milliseconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import http.client
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import segsvc  # noqa: E402
from segsvc.io.encodings import png_bytes  # noqa: E402
from segsvc.io.images import decode_image  # noqa: E402
from segsvc.io.modelfolder import DEFAULT_MODEL_DIR, read_config  # noqa: E402
from segsvc.io.visualize import palettized  # noqa: E402
from segsvc.models.fusion import fuse_batchnorm  # noqa: E402
from segsvc.runtime import BACKENDS, load_runtime  # noqa: E402
from segsvc.runtime.auto import decide  # noqa: E402
from segsvc.runtime.cpu import cpu_description  # noqa: E402

HEIGHT, WIDTH = 384, 480


def linknet(num_classes: int) -> torch.nn.Module:
    import segmentation_models_pytorch as smp

    return smp.Linknet("mobilenet_v2", encoder_weights=None, classes=num_classes)


def peers(num_classes: int) -> dict[str, torch.nn.Module]:
    import segmentation_models_pytorch as smp
    import torchvision

    return {
        "smp Linknet(mobilenet_v2)": linknet(num_classes),
        "smp Unet(mobilenet_v2)": smp.Unet("mobilenet_v2", encoder_weights=None, classes=num_classes),
        "tv lraspp_mobilenet_v3_large": LrasppLogits(
            torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
        ),
    }


class LrasppLogits(torch.nn.Module):
    """torchvision's segmentation models return a dict; keep only the logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def count(model: torch.nn.Module) -> tuple[float, float]:
    """(parameters in millions, multiply-adds in G at 384x480)."""
    params = sum(p.numel() for p in model.parameters()) / 1e6
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, HEIGHT, WIDTH))
    return params, counter.get_total_flops() / 2e9


def torch_runner(model: torch.nn.Module, channels_last: bool):
    # A copy each: Module.to(memory_format=...) changes the parameters in place.
    model = copy.deepcopy(model).eval().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def run(batch: np.ndarray) -> None:
        x = torch.from_numpy(batch)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            model(x)

    return run


def interleaved(runners: dict, batch: np.ndarray, rounds: int) -> dict[str, list[float]]:
    """Each round runs every model in turn; a model's timed call follows an untimed one, so that it runs
    with its weights in cache as a server would, not after another model has evicted them."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            run(batch)
            start = time.perf_counter()
            run(batch)
            times[name].append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_models(rounds: int, batch_rounds: int) -> None:
    ours = segsvc.load_model(DEFAULT_MODEL_DIR, fuse=False)
    models = {"segsvc (ours)": ours, **peers(ours.num_classes)}
    runners, info = {}, {}
    for name, model in models.items():
        info[name] = count(model)
        # Every model gets the same inference treatment (BatchNorm folded into the convolution before it);
        # the last row of each shows the model as built, BatchNorm layers kept.
        folded = fuse_batchnorm(copy.deepcopy(model))
        runners[f"{name} | eager NCHW"] = torch_runner(folded, channels_last=False)
        runners[f"{name} | eager channels_last"] = torch_runner(folded, channels_last=True)
        runners[f"{name} | eager channels_last, BN not folded"] = torch_runner(model, channels_last=True)
    for form in ("onnxruntime", "openvino", "auto"):
        runtime = load_runtime(DEFAULT_MODEL_DIR, form, threads=torch.get_num_threads())
        runners[f"segsvc (ours) | {form if form != 'auto' else 'auto: ' + runtime.form.name}"] = runtime.run_batch
    single = np.random.default_rng(0).standard_normal((1, 3, HEIGHT, WIDTH)).astype(np.float32)
    latency = interleaved(runners, single, rounds)
    batch8 = np.repeat(single, 8, axis=0)
    throughput = interleaved(runners, batch8, batch_rounds)
    reference = min(statistics.median(latency[f"smp Linknet(mobilenet_v2) | eager {layout}"]) for layout in ("NCHW", "channels_last"))
    print(cpu_description())
    print(f"input 1x3x{HEIGHT}x{WIDTH}, {torch.get_num_threads()} threads, {rounds} interleaved rounds (batch 8: {batch_rounds})")
    print("eager rows fold BatchNorm into the convolutions unless they say otherwise; ratio: against Linknet's faster folded row")
    print("| model | backend | params (M) | GMACs | p50 ms | p95 ms | images/s (batch 8) | p50 / Linknet best |")
    print("|---|---|---|---|---|---|---|---|")
    for name, times in latency.items():
        model_name, backend = name.split(" | ")
        params, gmacs = info[model_name]
        p50 = statistics.median(times)
        images_per_s = 8 / statistics.median(throughput[name])
        print(
            f"| {model_name} | {backend} | {params:.2f} | {gmacs:.2f} | {p50 * 1e3:.1f} | "
            f"{percentile(times, 95) * 1e3:.1f} | {images_per_s:.1f} | {p50 / reference:.2f} |"
        )
    ort_p50 = statistics.median(latency["segsvc (ours) | onnxruntime"])
    ort_rate = 8 / statistics.median(throughput["segsvc (ours) | onnxruntime"])
    print("\nonnxruntime speed-up over eager (ours): latency ratio at batch 1, images/s ratio at batch 8")
    for name in (k for k in latency if k.startswith("segsvc (ours) | eager")):
        eager_rate = 8 / statistics.median(throughput[name])
        print(f"- vs {name}: {statistics.median(latency[name]) / ort_p50:.2f}x at batch 1, {ort_rate / eager_rate:.2f}x at batch 8")


def bench_parts(rounds: int) -> None:
    """Where the time goes: the shared MobileNetV2 encoder, and the decoder + head on its features."""
    ours = segsvc.load_default_model()
    peer = fuse_batchnorm(linknet(ours.num_classes)).to(memory_format=torch.channels_last)
    x = torch.zeros(1, 3, HEIGHT, WIDTH).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ours_skips, peer_skips = ours.encoder(x), peer.encoder(x)
        parts = {
            "segsvc (ours) | encoder": lambda _: ours.encoder(x),
            "segsvc (ours) | decoder + head": lambda _: ours.head(ours.decoder(ours_skips)),
            "smp Linknet(mobilenet_v2) | encoder": lambda _: peer.encoder(x),
            "smp Linknet(mobilenet_v2) | decoder + head": lambda _: peer.segmentation_head(peer.decoder(peer_skips)),
        }
        times = interleaved(parts, x, rounds)
    print(f"\nparts, batch 1, BatchNorm folded, channels_last, {torch.get_num_threads()} threads")
    print("| model | part | p50 ms |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {' | '.join(name.split(' | '))} | {statistics.median(values) * 1e3:.1f} |")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_process_worker(backend: str, threads: int, bodies: list[bytes], seconds: float, barrier) -> float:
    """images/s of what a request computes (decode the PNG, `predict_mask`, encode the mask PNG) in one
    process, as a service worker loads the form, started together with its siblings by `barrier`."""
    torch.set_num_threads(threads)
    runner = load_runtime(DEFAULT_MODEL_DIR, backend, threads, shape_free=True)
    palette = [tuple(c) for c in read_config(DEFAULT_MODEL_DIR)["palette"]]

    def one(body: bytes) -> bytes:
        return png_bytes(palettized(segsvc.predict_mask(runner, decode_image(body)), palette))

    for body in bodies:
        one(body)
    barrier.wait()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        one(bodies[n % len(bodies)])
        n += 1
    return n / (time.perf_counter() - start)


def in_process_rate(backend: str, workers: int, threads: int, bodies: list[bytes], seconds: float) -> float:
    """The server's parallelism without HTTP: `workers` processes x `threads` threads, rates summed."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(workers)
    with context.Pool(workers) as pool:
        rates = pool.starmap(in_process_worker, [(backend, threads, bodies, seconds, barrier)] * workers)
    return sum(rates)


def server_parallelism() -> tuple[int, int]:
    """(workers, threads per worker) as service/service.py reads them."""
    workers = os.environ.get("SEGSVC_WORKERS", "cpu_count")
    return (int(workers) if workers.isdigit() else os.cpu_count() or 1), int(os.environ.get("SEGSVC_THREADS", "1"))


def start_server(repo: Path, port: int, backend: str | None) -> subprocess.Popen:
    """`bentoml serve` of the service in `repo` (this checkout, or e.g. a git worktree of an older commit);
    with `backend` None, each serves its own default backend."""
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(repo)}
    env.pop("SEGSVC_BACKEND", None)
    if backend is not None:
        env["SEGSVC_BACKEND"] = backend
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "bentoml"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def server_rss_mb(server: subprocess.Popen) -> list[float]:
    """Resident MB of the server's process and each of its descendants (the workers), smallest first."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    sizes, todo = [], [server.pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            sizes.append(int((Path("/proc") / str(pid) / "status").read_text().split("VmRSS:")[1].split()[0]) / 1024)
        except (OSError, IndexError):
            continue
    return sorted(sizes)


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:  # a loaded machine can take long to drain; the next target needs the cores
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def wait_ready(url: str, server: subprocess.Popen | None) -> None:
    import requests

    deadline = time.time() + 600  # a busy 2-core machine can take minutes to start workers
    while True:
        if (server is not None and server.poll() is not None) or time.time() > deadline:
            raise SystemExit(f"{url} did not become ready; run `make serve` (or serve that repo) to see why")
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)


def load_test(url: str, bodies: list[bytes], requests_total: int, max_seconds: float, in_process: float) -> None:
    """POST /segment with raw PNG bodies at concurrency 1 and 8; one Markdown table row per level."""
    address = urllib.parse.urlsplit(url)
    local = threading.local()

    def one(i: int) -> float:
        # http.client, one keep-alive connection per client thread: the load generator shares the server's
        # cores, so it should spend as little CPU per request as it can.
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        start = time.perf_counter()
        local.connection.request("POST", "/segment", body=bodies[i % len(bodies)], headers={"Content-Type": "image/png"})
        response = local.connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"POST /segment answered {response.status}")
        return time.perf_counter() - start

    print("| concurrency | requests | p50 ms | p95 ms | p99 ms | requests/s | / in-process |")
    print("|---|---|---|---|---|---|---|")
    for concurrency in (1, 8):
        latencies: list[float] = []
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(2 * concurrency)))  # warm-up: connections open, workers busy once
            start = time.perf_counter()
            futures = [pool.submit(one, i) for i in range(requests_total)]
            for future in futures:
                if time.perf_counter() - start > max_seconds:
                    future.cancel()
                    continue
                latencies.append(future.result())
            elapsed = time.perf_counter() - start
        rate = len(latencies) / elapsed
        print(
            f"| {concurrency} | {len(latencies)} | {percentile(latencies, 50) * 1e3:.0f} | {percentile(latencies, 95) * 1e3:.0f} "
            f"| {percentile(latencies, 99) * 1e3:.0f} | {rate:.1f} | {rate / in_process:.2f} |"
        )


def bench_http(requests_total: int, max_seconds: float, backend: str | None, targets: list[str], rounds: int) -> None:
    """Load-test each target in turn, `rounds` times (A B A B ...): a repo folder to serve, or the URL of a
    server already running (started with the same SEGSVC_WORKERS / SEGSVC_THREADS / SEGSVC_BACKEND)."""
    print(cpu_description())
    images = sorted((Path(os.environ.get("SEGSVC_SHARED", ROOT.parent / "shared")) / "datasets/camvid_mini/test").iterdir())
    bodies = [p.read_bytes() for p in images]
    workers, threads = server_parallelism()
    if backend in (None, "auto"):  # both sides run the form auto chooses, decided once as the service does
        backend = decide(DEFAULT_MODEL_DIR, threads)["best"]
        print(f"auto chose {backend}: the server and the in-process reference both run it")
    # Measured before any server this script starts, so that nothing else is on the cores.
    in_process = in_process_rate(backend, workers, threads, bodies, seconds=min(20.0, max_seconds))
    for round_index in range(rounds):
        for target in targets:
            server = None
            if target.startswith(("http://", "https://")):
                url = target.rstrip("/")
            else:
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                server = start_server(Path(target).resolve(), port, backend)
            try:
                wait_ready(url, server)
                print(
                    f"\nHTTP /segment, {target} (round {round_index + 1}/{rounds}), backend {backend}, {workers} workers x "
                    f"{threads} thread(s), CamVid 480x360 PNGs; in-process (decode, predict_mask, mask PNG) with the "
                    f"same {workers} processes x {threads} thread(s): {in_process:.1f} images/s"
                )
                load_test(url, bodies, requests_total, max_seconds, in_process)
                if server is not None:
                    print("resident MB after the load, main process and workers:", " / ".join(f"{mb:.0f}" for mb in server_rss_mb(server)))
                describe_backend(url)
            finally:
                if server is not None:
                    stop_server(server)


def describe_backend(url: str) -> None:
    import requests

    info = requests.get(url + "/model", timeout=10).json()
    print(f"served: {info.get('form')} ({info.get('engine', '')} {info.get('precision', '')}), timings ms {info.get('timings_ms', '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=21, help="interleaved batch-1 rounds")
    parser.add_argument("--batch-rounds", type=int, default=5, help="interleaved batch-8 rounds")
    parser.add_argument("--http", action="store_true", help="also load-test a bentoml serve on loopback")
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="the service's SEGSVC_BACKEND (default: each target's own)")
    parser.add_argument("--requests", type=int, default=100, help="HTTP requests per concurrency level")
    parser.add_argument("--max-seconds", type=float, default=120, help="time bound per HTTP level")
    parser.add_argument("--repo", action="append", default=[], help="with --http: serve this repo folder (repeatable)")
    parser.add_argument("--url", action="append", default=[], help="with --http: a server already running (repeatable)")
    parser.add_argument("--http-rounds", type=int, default=1, help="with --http: times to go through the targets")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--parts", action="store_true", help="also time encoder and decoder + head apart")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if not args.skip_models:
        bench_models(args.rounds, args.batch_rounds)
    if args.parts:
        bench_parts(args.rounds)
    if args.http:
        targets = [*args.repo, *args.url] or [str(ROOT)]
        bench_http(args.requests, args.max_seconds, args.backend, targets, args.http_rounds)


if __name__ == "__main__":
    main()
