"""A real `bentoml serve` process on a free loopback port, real HTTP requests, good and bad."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import bentoml
import numpy as np
import pytest
import requests
from bentoml.exceptions import BentoMLException
from PIL import Image

import segsvc
from segsvc.io.encodings import rasterize
from segsvc.io.modelfolder import DEFAULT_MODEL_DIR
from segsvc.runtime import FORMS, load_runtime
from tests.conftest import BENTOML, BLOCK_TORCH, MAX_BYTES, ROOT, Server, free_port, post, process_environments, run_segsvc

SEGSVC_BENTO = str(Path(sys.executable).parent / "segsvc-bento")  # the console script, as people run it

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The default model with backend auto, its workers unable to import torch, Lightning or albumentations."""
    home = tmp_path_factory.mktemp("bentoml_home")
    (home / "sitecustomize.py").write_text(BLOCK_TORCH)
    server = Server(home, PYTHONPATH=os.pathsep.join([str(home), str(ROOT)]))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(server):
    """The library runtime of the form the server's workers chose: their masks must be its masks."""
    return load_runtime(DEFAULT_MODEL_DIR, requests.get(server.url + "/model", timeout=10).json()["form"], threads=1)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def test_camvid_masks_over_http_equal_the_library(server, served, camvid_mini):
    """One thread a worker, on the form auto chose: the library's runtime of that form gives the same masks."""
    model, backend = segsvc.load_default_model(), served
    least = 0.97 if served.form.reduced else 0.999  # bf16 and int8 forms serve only with an accuracy record
    for path in sorted((camvid_mini / "test").iterdir()):
        response = requests.post(server.url + "/segment", files={"image": (path.name, path.read_bytes(), "image/png")}, timeout=120)
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        mask = Image.open(io.BytesIO(response.content))
        assert mask.mode == "P" and mask.size == (480, 360)
        assert mask.getpalette()[:6] == [128, 128, 128, 128, 0, 0]  # sky, building colours attached
        np.testing.assert_array_equal(np.asarray(mask), segsvc.predict_mask(backend, Image.open(path)))
        assert (np.asarray(mask) == segsvc.predict_mask(model, Image.open(path))).mean() >= least  # and PyTorch's


def test_raw_body_json_and_overlay(server, camvid_mini):
    data = next((camvid_mini / "val").iterdir()).read_bytes()
    report = post(server, "/segment_json", data).json()
    assert (report["width"], report["height"]) == (480, 360) and report["classes"][3] == "road"
    assert abs(sum(report["fractions"].values()) - 1) < 1e-6 and report["fractions"]["road"] > 0.1
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(report["mask_png_base64"]))))
    np.testing.assert_array_equal(mask, np.asarray(Image.open(io.BytesIO(post(server, "/segment", data).content))))
    shown = Image.open(io.BytesIO(post(server, "/overlay", data).content))
    assert shown.mode == "RGB" and shown.size == (480, 360)


def test_model_info_and_bentoml_endpoints(server):
    info = requests.get(server.url + "/model", timeout=10).json()
    assert info["classes"][0] == "sky" and len(info["palette"]) == 11 and info["model"].startswith("segsvc-camvid:")
    assert info["chosen_by"] == "auto" and info["form"] in info["timings_ms"]["new_sizes"]
    assert info["why"].startswith(info["form"]) and "new sizes" in info["why"]
    assert info["new_shapes"]  # how this form runs a size it has not seen, whichever engine it is
    assert (info["engine"], info["precision"]) == (FORMS[info["form"]].engine, FORMS[info["form"]].precision)
    assert info["input"]["max_bytes"] == MAX_BYTES and info["demo"] == "/demo"
    page = requests.get(server.url + info["demo"], timeout=10)
    assert page.status_code == 200 and "segment_json" in page.text and "<script src" not in page.text  # self-contained
    assert requests.post(server.url + "/model", json={}, timeout=10).json() == info
    assert requests.get(server.url + "/livez", timeout=10).status_code == 200
    metrics = requests.get(server.url + "/metrics", timeout=10)
    assert metrics.status_code == 200 and "request" in metrics.text


def bomb_png() -> bytes:
    return encode(Image.new("1", (12_000, 12_000)), "PNG")  # 144 MP declared, ~20 KB on the wire


BAD_INPUTS = [
    ("not an image", b"hello, world", "image/png", 400, "not an image"),
    ("empty body", b"", "image/png", 400, "empty"),
    ("truncated png", None, "image/png", 400, "corrupt or truncated"),
    ("over byte limit", b"\0" * (MAX_BYTES + 1), "image/png", 413, "over the limit"),
    ("over pixel limit", None, "image/png", 413, "over the limit of 5000000"),
    ("multipart without image field", None, None, 400, "no field named 'image'"),
]


def bad_body(case: str, body: bytes | None, camvid_mini: Path) -> bytes | None:
    if case == "truncated png":
        return next((camvid_mini / "test").iterdir()).read_bytes()[:5000]
    if case == "over pixel limit":
        return bomb_png()
    return body


@pytest.mark.parametrize("route", ["/segment", "/segment_json", "/overlay"])
@pytest.mark.parametrize("case,body,content_type,status,message", BAD_INPUTS)
def test_bad_input_gets_clear_json_error_and_server_stays_healthy(server, camvid_mini, route, case, body, content_type, status, message):
    body = bad_body(case, body, camvid_mini)
    if case == "multipart without image field":
        response = requests.post(server.url + route, files={"picture": ("a.png", b"x")}, timeout=60)
    else:
        response = post(server, route, body, content_type)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]
    assert response.json()["status"] == status
    assert server.healthy()


@pytest.mark.parametrize("case,body,content_type,status,message", [c for c in BAD_INPUTS if c[2]])
def test_bad_input_keeps_its_status_over_the_client(server, camvid_mini, tmp_path, case, body, content_type, status, message):
    """BentoML's client uploads the file as multipart `image` and raises an exception carrying the status."""
    path = tmp_path / "input.png"
    path.write_bytes(bad_body(case, body, camvid_mini))
    with bentoml.SyncHTTPClient(server.url) as client:
        with pytest.raises(BentoMLException) as raised:
            client.segment(image=path)
    assert raised.value.error_code == status and message in str(raised.value)
    assert server.healthy()


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"image": (None, "http://127.0.0.1:1/x.png")}, "must be a file upload"),  # BentoML would fetch a URL
        ({"image": ("a.png", b"x"), "classes": ("c.bin", bytes(range(256)))}, "'classes' is not text"),
        ({"image": ("a.png", b"x"), "classes": (None, "road,nothing")}, "unknown classes ['nothing']"),
        ({"image": ("a.png", b"x"), "tolerance": (None, "-1")}, "tolerance: Input should be greater than or equal to 0"),
        ({"image": ("a.png", b"x"), "tolerance": (None, "1e308")}, "tolerance: Input should be less than or equal to 10000"),
        ({"image": ("a.png", b"x"), "confidence": (None, "0")}, "confidence: Input should be a valid boolean"),  # as typed
        ({"image": ("a.png", b"x"), "classes": (None, "")}, "unknown classes ['']"),
        ({"image": ("a.png", b"x"), "rel": (None, "true")},  # misspelt: answered without RLE before
         "unknown field 'rel': /segment_json takes image, classes, rle, polygons, tolerance, confidence"),
    ],
)
def test_bad_form_fields_get_400_not_500(server, fields, message):
    response = requests.post(server.url + "/segment_json", files=fields, timeout=60)
    assert response.status_code == 400 and message in response.json()["error"], response.text


def test_an_unknown_parameter_is_named_not_ignored(server, camvid_mini):
    """A raw image body takes its parameters from the query string: a misspelt one is a 400 naming it."""
    body = next((camvid_mini / "test").iterdir()).read_bytes()
    response = post(server, "/segment?outptu=confidence&x=1", body, "image/png")
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "unknown fields 'outptu', 'x': /segment takes image, output"
    assert post(server, "/segment?output=confidence", body, "image/png").status_code == 200


class FetchListener:
    """A loopback TCP listener that records every connection: a server that fetched a URL would show here."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:  # closed
                return
            self.connections += 1
            connection.close()


def multipart(boundary: str, parts: list[tuple[str, bytes]]) -> bytes:
    """A multipart body from (header lines, content) pairs, the headers written as given."""
    chunks = [f"--{boundary}\r\n".encode() + head.encode() + b"\r\n\r\n" + content + b"\r\n" for head, content in parts]
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


TRICKY_IMAGE_PARTS = {
    "filename in another header": ['Content-Disposition: form-data; name="image"\r\nX-Note: filename="a.png"'],
    "filename in another parameter": ['Content-Disposition: form-data; name="image"; xfilename="a.png"'],
    "filename in the content type": ['Content-Disposition: form-data; name="image"\r\nContent-Type: image/png; filename="a.png"'],
    "unquoted name": ["Content-Disposition: form-data; name=image"],
    "odd case": ['CONTENT-DISPOSITION: FORM-DATA; NAME="image"'],
    "text before a file": ['Content-Disposition: form-data; name="image"', 'Content-Disposition: form-data; name="image"; filename="a.png"'],
}


@pytest.mark.parametrize("case", TRICKY_IMAGE_PARTS)
def test_an_image_part_that_is_not_a_file_is_a_400_and_nothing_is_fetched(server, camvid_mini, case):
    listener = FetchListener()
    url = f"http://127.0.0.1:{listener.port}/x.png".encode()
    png = next((camvid_mini / "test").iterdir()).read_bytes()
    parts = [(head, url if index == 0 else png) for index, head in enumerate(TRICKY_IMAGE_PARTS[case])]
    for route in ("/segment", "/segment_json", "/overlay"):
        body = multipart("b0undary", parts)
        response = post(server, route, body, "multipart/form-data; boundary=b0undary")
        assert response.status_code == 400, (case, route, response.text)
        assert "must be a file upload" in response.json()["error"]
    json_body = requests.post(server.url + "/segment", json={"image": url.decode()}, timeout=60)
    assert json_body.status_code == 415 and "multipart file field 'image'" in json_body.json()["error"]
    time.sleep(0.5)
    assert listener.connections == 0, f"the server fetched {url!r}"
    listener.socket.close()


def test_opacity_must_be_a_number(server):
    response = requests.post(server.url + "/overlay", files={"image": ("a.png", b"x"), "opacity": (None, "true")}, timeout=60)
    assert response.status_code == 400 and "opacity: Input should be a valid number" in response.json()["error"], response.text


def test_a_parameter_given_twice_counts_twice(server, camvid_mini):
    """BentoML keeps the last of repeated form fields; the gate makes them one list, as a query string too."""
    data = next((camvid_mini / "val").iterdir()).read_bytes()
    fields = [("image", ("a.png", data)), ("classes", (None, "road")), ("classes", (None, "car"))]
    report = requests.post(server.url + "/segment_json", files=fields, timeout=60).json()
    assert set(report["fractions"]) == {"road", "car"}
    assert set(post(server, "/segment_json?classes=road&classes=car", data).json()["fractions"]) == {"road", "car"}
    response = requests.post(server.url + "/overlay", files=[*fields[:1], ("opacity", (None, "0.2")), ("opacity", (None, "0.3"))], timeout=60)
    assert response.status_code == 400 and "opacity" in response.json()["error"]


def test_openapi_lists_the_endpoints_with_their_parameters(server):
    spec = requests.get(server.url + "/docs.json", timeout=10).json()
    # the API page at / shows segsvc's title, version and description, not BentoML's placeholder
    assert spec["info"]["title"] == "segsvc" and spec["info"]["version"] == segsvc.__version__, spec["info"]
    assert "POST /segment" in spec["info"]["description"] and "curl -s -F image=@" in spec["info"]["description"]
    assert "BentoML Team" not in str(spec["info"])
    expected = {
        "/segment": {"image", "output"},
        "/segment_json": {"image", "classes", "rle", "polygons", "tolerance", "confidence"},
        "/overlay": {"image", "opacity"},
    }
    for route, parameters in expected.items():
        body = spec["paths"][route]["post"]["requestBody"]["content"]
        schema = body["multipart/form-data"]["schema"]
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        assert set(schema["properties"]) == parameters, (route, schema)
        assert schema["required"] == ["image"]
    assert "/model" in spec["paths"]


def test_python_client_gives_the_library_mask(server, served, camvid_mini):
    path = sorted((camvid_mini / "test").iterdir())[1]
    expected = segsvc.predict_mask(served, Image.open(path))
    with bentoml.SyncHTTPClient(server.url) as client:
        mask = client.segment(image=path)
        assert client.model_info()["classes"][3] == "road"
    assert mask.mode == "P"
    np.testing.assert_array_equal(np.asarray(mask), expected)

    async def call() -> Image.Image:
        async with bentoml.AsyncHTTPClient(server.url) as client:
            return await client.segment(image=path)

    np.testing.assert_array_equal(np.asarray(anyio.run(call)), expected)


def test_segment_json_formats_round_trip(server, served, camvid_mini):
    """RLE decodes to the exact mask, polygons at tolerance 0 rasterise back, confidence is the library's."""
    from pycocotools import mask as coco_mask

    path = sorted((camvid_mini / "val").iterdir())[0]
    with bentoml.SyncHTTPClient(server.url) as client:
        report = client.segment_json(image=path, rle=True, polygons=True, tolerance=0.0, confidence=True)
        only = client.segment_json(image=path, classes=["road", "car"], rle=True)
        confidence_image = client.segment(image=path, output="confidence")
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(report["mask_png_base64"]))))
    assert set(report["rle"]) == set(report["polygons"]) == set(report["classes"]) and report["polygon_tolerance"] == 0
    for class_id, name in enumerate(report["classes"]):
        rle = report["rle"][name]
        np.testing.assert_array_equal(coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}), mask == class_id)
        filled, truth = rasterize(report["polygons"][name], mask.shape), mask == class_id
        union = np.logical_or(filled, truth).sum()
        assert union == 0 or np.logical_and(filled, truth).sum() / union >= 0.99, name
    _, confidence = segsvc.predict(served, Image.open(path), confidence=True)
    for levels in (np.asarray(Image.open(io.BytesIO(base64.b64decode(report["confidence_png_base64"])))), np.asarray(confidence_image)):
        assert levels.shape == mask.shape and np.abs(levels / 255.0 - confidence).max() <= 1 / 255
    assert set(only["fractions"]) == set(only["rle"]) == {"road", "car"}
    assert only["fractions"]["road"] == report["fractions"]["road"] and "polygons" not in only


def test_every_format_and_mode(server, shared):
    base = Image.open(shared / "images" / "bird.png").convert("RGB").resize((97, 61))
    cases = [
        ("JPEG", base, {}), ("PNG", base, {}), ("WEBP", base, {}), ("BMP", base, {}), ("TIFF", base, {}),
        ("GIF", base.convert("P"), {}), ("PNG", base.convert("L"), {}), ("PNG", base.convert("LA"), {}),
        ("PNG", base.convert("P"), {}), ("PNG", base.convert("RGBA"), {}), ("JPEG", base.convert("CMYK"), {}),
        ("TIFF", base.convert("CMYK"), {}),
        ("PNG", Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 257)).convert("I;16"), {}),
    ]  # fmt: skip
    for fmt, image, params in cases:
        response = post(server, "/segment", encode(image, fmt, **params), f"image/{fmt.lower()}")
        assert response.status_code == 200, (fmt, image.mode, response.text)
        assert Image.open(io.BytesIO(response.content)).size == (97, 61), (fmt, image.mode)


def test_animated_gif_uses_first_frame(server):
    frames = [Image.new("RGB", (64, 40), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    response = post(server, "/segment", buffer.getvalue(), "image/gif")
    assert response.status_code == 200 and Image.open(io.BytesIO(response.content)).size == (64, 40)


def test_exif_orientation_is_applied(server, shared):
    image = Image.open(shared / "images" / "cat.png").convert("RGB").resize((120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    response = post(server, "/segment", encode(image, "JPEG", exif=exif.tobytes()), "image/jpeg")
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (80, 120)  # as a viewer shows it


def test_sixteen_concurrent_requests_all_succeed(server, camvid_mini):
    paths = sorted((camvid_mini / "train").iterdir())
    bodies = [paths[i % len(paths)].read_bytes() for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda body: post(server, "/segment", body), bodies))
    assert [r.status_code for r in responses] == [200] * 16
    assert all(Image.open(io.BytesIO(r.content)).size == (480, 360) for r in responses)


def thread_affinities(pid: str) -> dict[str, set[int]]:
    """The CPUs each thread of process `pid` may run on, by thread name and id."""
    found = {}
    for task in (Path("/proc") / pid / "task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            found[f"{name} {task.name}"] = os.sched_getaffinity(int(task.name))
        except OSError:  # the thread ended
            continue
    return found


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: nothing to share")
def test_workers_inference_threads_are_not_confined_to_one_cpu(server, camvid_mini):
    """Under load, no thread of either worker is pinned: OpenVINO pinned each worker's inference thread to
    the first core, and two workers computed on one core while the other idled."""
    workers = [c.split()[0] for c in process_environments(f"BENTOML_HOME={server.log.parent}") if "worker" in c]
    assert len(workers) == 2, workers
    paths = sorted((camvid_mini / "train").iterdir())
    bodies = [paths[i % len(paths)].read_bytes() for i in range(48)]
    everywhere = os.sched_getaffinity(0)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = pool.map(lambda body: post(server, "/segment", body), bodies)
        time.sleep(1.0)  # every worker busy now, its engine's threads started
        affinities = {pid: thread_affinities(pid) for pid in workers}
        assert [r.status_code for r in responses] == [200] * len(bodies)
    for pid, threads in affinities.items():
        pinned = {thread: cpus for thread, cpus in threads.items() if cpus != everywhere}
        assert not pinned, f"worker {pid}: threads confined to {pinned}, not {everywhere}"


def test_service_does_not_import_lightning():
    code = "import service.service, sys; assert not any(m.split('.')[0] in ('lightning', 'pytorch_lightning') for m in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "true"}
    env["BENTOML_HOME"] = env.get("BENTOML_HOME", str(ROOT / ".pytest_cache" / "bentoml_home"))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_workers_hold_no_torch(server):
    """The fixture's workers cannot import torch (an import hook); and none of its libraries is mapped in them."""
    workers = [c for c in process_environments(f"BENTOML_HOME={server.log.parent}") if "worker" in c]
    assert len(workers) == 2, workers
    for worker in workers:
        maps = (Path("/proc") / worker.split()[0] / "maps").read_text()
        assert "libtorch" not in maps and ("onnxruntime" in maps or "openvino" in maps), worker


@pytest.mark.parametrize(
    ("backend", "missing", "message"),
    [
        ("tensorrt", "model_int8_qdq.onnx", "segsvc: SEGSVC_BACKEND='tensorrt': expected one of auto, onnxruntime, openvino"),
        ("openvino-int8", "model_int8_qdq.onnx", "segsvc: SEGSVC_BACKEND: backend 'openvino-int8' is not available here (no model_int8_qdq.onnx"),
        ("auto", "model.onnx", "segsvc: SEGSVC_BACKEND=auto: no backend can serve"),
    ],
)
def test_an_unknown_or_unavailable_backend_stops_serve_with_one_line(backend, missing, message, tmp_path):
    """Checked by `bentoml serve` itself, before any worker starts: one line naming the available backends."""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT)}
    model = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")
    (model / missing).unlink()
    (model / "accuracy.json").unlink()  # so auto has no reduced form to fall back on either
    result = subprocess.run(
        [SEGSVC_BENTO, "import", str(model), "--tag", "partial"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    env.update(SEGSVC_BACKEND=backend, SEGSVC_MODEL_TAG="partial:latest")
    result = subprocess.run([BENTOML, "serve", "--port", str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_workers_start_with_glibc_huge_pages(server):
    """`bentoml serve` runs the start-up hook before it starts the workers, so they inherit the hugetlb tunable."""
    workers = {c: env for c, env in process_environments(f"BENTOML_HOME={server.log.parent}").items() if "worker" in c}
    assert len(workers) == 2, list(workers)
    assert all("glibc.malloc.hugetlb=1" in env.get("GLIBC_TUNABLES", "").split(":") for env in workers.values())


def test_huge_pages_keep_the_users_tunables():
    code = (
        "import os, service.service as s; s.ask_for_huge_pages(); print(os.environ['GLIBC_TUNABLES']); "
        "os.environ['GLIBC_TUNABLES'] = 'glibc.malloc.hugetlb=0'; s.ask_for_huge_pages(); print(os.environ['GLIBC_TUNABLES'])"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "true", "GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}
    env["BENTOML_HOME"] = env.get("BENTOML_HOME", str(ROOT / ".pytest_cache" / "bentoml_home"))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1", "glibc.malloc.hugetlb=0"]


def test_a_stale_default_in_the_store_is_replaced_by_the_shipped_model(tmp_path):
    """The store outlives upgrades: an older `segsvc-camvid:latest` must not shadow the shipped model."""
    code = f"""
import bentoml, segsvc
from segsvc.io.modelfolder import DEFAULT_MODEL_DIR
from service.store import DEFAULT_MODEL_NAME, ensure_default_model, import_model, model_digest
import_model(segsvc.save_model(segsvc.build_model(11), {str(tmp_path / "old")!r}), DEFAULT_MODEL_NAME)
ensure_default_model()
ensure_default_model()  # already current: no third version
assert bentoml.models.get(DEFAULT_MODEL_NAME).info.labels["digest"] == model_digest(DEFAULT_MODEL_DIR)
assert len(bentoml.models.list(DEFAULT_MODEL_NAME)) == 2
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_model_store_command_is_the_services_and_refuses_a_bad_folder_in_one_line(tmp_path):
    """`segsvc-bento import` (the training CLI never imports BentoML): a folder that is no model is one line, exit 2;
    `segsvc import`, where it used to be, says where it went."""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "home"), "BENTOML_DO_NOT_TRACK": "true"}
    result = subprocess.run([SEGSVC_BENTO, "import", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip() == f"segsvc-bento import: error: not a segsvc model folder (no config.json): {tmp_path}"
    moved = run_segsvc("import", "segsvc/assets/camvid_default", "--tag", "x")
    assert moved.returncode == 2 and moved.stderr.strip().endswith("then `segsvc-bento import DIR [--tag NAME]`")
    assert "Traceback" not in result.stderr + moved.stderr


@pytest.fixture(scope="module")
def imported_torch_server(tmp_path_factory):
    """A second server: a model put in the store by `segsvc-bento import`, the PyTorch backend, an API key."""
    home = tmp_path_factory.mktemp("bentoml_home_onnx")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [SEGSVC_BENTO, "import", "segsvc/assets/camvid_default", "--tag", "street"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    tag = result.stdout.strip().splitlines()[-1]
    assert tag.startswith("street:")
    server = Server(home, SEGSVC_MODEL_TAG="street:latest", SEGSVC_BACKEND="torch", SEGSVC_API_KEY="s3cret")
    yield server
    server.stop()


def test_api_key_and_torch_backend(imported_torch_server, camvid_mini):
    server = imported_torch_server
    path = sorted((camvid_mini / "test").iterdir())[0]
    assert post(server, "/segment", path.read_bytes()).status_code == 401
    assert post(server, "/segment", path.read_bytes(), headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert requests.get(server.url + "/model", timeout=10).status_code == 401
    assert post(server, "/segment", path.read_bytes(), headers={"Authorization": "s3cret"}).status_code == 401
    for scheme in ("bearer", "BEARER"):  # the scheme name is case-insensitive (RFC 7235)
        assert post(server, "/segment", path.read_bytes(), headers={"Authorization": f"{scheme} s3cret"}).status_code == 200
    with bentoml.SyncHTTPClient(server.url, token="wrong") as client:
        with pytest.raises(BentoMLException) as raised:
            client.segment(image=path)
        assert raised.value.error_code == 401
    with bentoml.SyncHTTPClient(server.url, token="s3cret") as client:
        assert client.segment(image=path).size == (480, 360)
    auth = {"Authorization": "Bearer s3cret"}
    info = requests.get(server.url + "/model", headers=auth, timeout=10).json()
    assert info["form"] == "torch" and info["model"].startswith("street:")
    response = post(server, "/segment", path.read_bytes(), headers=auth)
    assert response.status_code == 200
    expected = segsvc.predict_mask(segsvc.load_default_model(), Image.open(path))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))), expected)
    assert server.healthy()


def bento_requirements(bento: Path) -> dict[str, str]:
    """The bento's Python requirements, read back: name -> pinned version. Fails on anything of the training
    stack or CUDA, and on a pin other than the version installed here (the one the tests ran)."""
    from importlib.metadata import version

    pins = {}
    for line in (bento / "env" / "python" / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        name, _, pinned = line.partition("==")
        name = name.split(";")[0].strip().lower()
        assert not name.startswith(("torch", "nvidia", "cuda", "triton", "albumentations", "lightning", "pytorch")), line
        assert pinned and pinned.split(";")[0].strip() == version(name), f"{line}: the tests ran {version(name)}"
        pins[name] = pinned
    return pins


def test_bentoml_build_contains_the_model(tmp_path):
    """BentoML 1.4 records the model in the Bento by tag and packs its files into the exported archive."""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([BENTOML, "build", "--output", "tag"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (bento,) = [p for p in (tmp_path / "bentos" / "segsvc").iterdir() if p.name != "latest"]
    assert "tag: segsvc-camvid:" in (bento / "bento.yaml").read_text()
    readme = (bento / "README.md").read_text()  # bentofile's description: the text of the bento's API page at /
    assert readme.startswith("# segsvc") and "POST /segment_json" in readme and "curl -s -F image=@" in readme
    assert (bento / "src" / "segsvc" / "assets" / "camvid_default" / "model.safetensors").is_file()
    assert (bento / "src" / "service" / "demo" / "index.html").is_file()  # the demo page works inside the Bento
    assert (bento / "src" / "segsvc" / "assets" / "camvid_default" / "model.onnx").is_file()
    requirements = bento_requirements(bento)
    assert {"onnxruntime", "openvino", "bentoml", "numpy", "pillow"} <= set(requirements), requirements
    archive = tmp_path / "segsvc.bento"
    result = subprocess.run([BENTOML, "export", "segsvc:latest", str(archive)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    import tarfile

    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert any(n.startswith("./models/segsvc-camvid/") and n.endswith("/model.safetensors") for n in names), names
