"""Overload on a real server with a tiny queue bound: 503 at once, no work for clients that left, memory back."""

from __future__ import annotations

import concurrent.futures
import io
import re
import socket
import time

import pytest
import requests
from PIL import Image

from tests.conftest import Server, post, process_environments

BOUND = 16_000_000  # two of the 7.2 MP images below, not three
LARGE = (3000, 2400)  # tiled (over 4 MP): it can stop, or pause for a small image, between tiles


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("bentoml_home_overload")
    limits = {"SEGSVC_MAX_BYTES": str(20 * 2**20), "SEGSVC_MAX_PIXELS": str(40_000_000), "SEGSVC_MAX_QUEUED_PIXELS": str(BOUND)}
    server = Server(home, SEGSVC_WORKERS="1", SEGSVC_BACKEND="onnxruntime", **limits)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def large(camvid_mini) -> bytes:
    photo = Image.open(sorted((camvid_mini / "test").iterdir())[0]).convert("RGB").resize(LARGE, Image.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def metric(server: Server, name: str) -> float:
    """One sample of /metrics, e.g. 'segsvc_queue_depth' or 'segsvc_requests_dropped_total{reason="...",...}'."""
    text = requests.get(server.url + "/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics:\n" + "\n".join(line for line in text.splitlines() if line.startswith("segsvc_"))
    return float(found.group(1))


def dropped(server: Server, reason: str, stage: str) -> float:
    return metric(server, f'segsvc_requests_dropped_total{{reason="{reason}",stage="{stage}"}}')


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "condition not met in time"
        time.sleep(0.05)


def send_and_leave(server: Server, body: bytes, leave_when) -> None:
    """POST /segment on a raw connection, then close it without reading the answer once `leave_when()`."""
    head = f"POST /segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(head.encode() + body)
        wait_for(leave_when)


def test_the_overflow_gets_503_at_once_with_retry_after(server, large):
    rejected = metric(server, "segsvc_requests_rejected_total")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        admitted = [pool.submit(post, server, "/segment", large, "image/jpeg") for _ in range(2)]
        wait_for(lambda: metric(server, "segsvc_queue_depth") == 2)
        assert metric(server, "segsvc_queue_pixels") == 2 * LARGE[0] * LARGE[1]
        start = time.perf_counter()
        overflow = post(server, "/segment", large, "image/jpeg")
        seconds = time.perf_counter() - start
        assert all(future.result().status_code == 200 for future in admitted)
    assert overflow.status_code == 503 and seconds < 5, (overflow.status_code, seconds)
    assert overflow.headers["content-type"] == "application/json" and int(overflow.headers["retry-after"]) >= 1
    assert overflow.json()["status"] == 503 and "busy" in overflow.json()["error"]
    assert metric(server, "segsvc_requests_rejected_total") == rejected + 1
    assert metric(server, "segsvc_queue_depth") == 0 and metric(server, "segsvc_queue_pixels") == 0


def test_an_image_over_the_bound_is_served_when_the_queue_is_empty(server, camvid_mini):
    photo = Image.open(sorted((camvid_mini / "test").iterdir())[0]).convert("RGB").resize((4800, 3600))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=60)  # 17.3 MP > BOUND
    response = post(server, "/segment", buffer.getvalue(), "image/jpeg")
    assert response.status_code == 200 and Image.open(io.BytesIO(response.content)).size == (4800, 3600)


def test_a_request_whose_client_left_while_waiting_is_never_computed(server, large):
    before = dropped(server, "disconnected", "waiting")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, server, "/segment", large, "image/jpeg")
        wait_for(lambda: metric(server, "segsvc_queue_depth") == 1)
        send_and_leave(server, large, lambda: metric(server, "segsvc_queue_depth") == 2)
        wait_for(lambda: metric(server, "segsvc_queue_depth") == 1)  # gone from the queue while the first runs
        assert not first.done()
        assert first.result().status_code == 200
    assert dropped(server, "disconnected", "waiting") == before + 1


def test_a_large_image_in_flight_stops_when_its_client_leaves(server, large):
    before = dropped(server, "disconnected", "computing")
    start = time.perf_counter()
    post(server, "/segment", large, "image/jpeg")
    alone = time.perf_counter() - start
    sent = time.perf_counter()
    send_and_leave(server, large, lambda: metric(server, "segsvc_queue_depth") == 1 and time.perf_counter() > sent + alone / 4)
    left = time.perf_counter()
    wait_for(lambda: metric(server, "segsvc_queue_depth") == 0)
    assert dropped(server, "disconnected", "computing") == before + 1
    assert time.perf_counter() - left < alone  # stopped at a tile, not finished


def test_a_small_request_overtakes_large_ones(server, large, camvid_mini):
    small = sorted((camvid_mini / "test").iterdir())[0].read_bytes()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        larges = [pool.submit(post, server, "/segment", large, "image/jpeg") for _ in range(2)]
        wait_for(lambda: metric(server, "segsvc_queue_depth") == 2)
        response = post(server, "/segment", small, "image/png")
        assert response.status_code == 200
        assert not any(future.done() for future in larges)  # answered between the tiles of the first large one
        assert all(future.result().status_code == 200 for future in larges)


def worker_rss(server: Server) -> int:
    (worker,) = [c for c in process_environments(f"BENTOML_HOME={server.log.parent}") if "worker" in c]
    return int(open(f"/proc/{worker.split()[0]}/statm").read().split()[1]) * 4096


def test_memory_returns_after_a_burst(server, large, camvid_mini):
    small = sorted((camvid_mini / "test").iterdir())[0].read_bytes()
    for _ in range(3):
        post(server, "/segment", small, "image/png")
    idle = worker_rss(server)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        statuses = sorted(r.status_code for r in pool.map(lambda _: post(server, "/segment", large, "image/jpeg"), range(6)))
    assert set(statuses) <= {200, 503} and 200 in statuses, statuses
    deadline = time.time() + 10
    while worker_rss(server) > idle + 200e6 and time.time() < deadline:
        time.sleep(0.2)
    assert worker_rss(server) <= idle + 200e6, (idle, worker_rss(server))
