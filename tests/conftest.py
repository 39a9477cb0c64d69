"""What the tests share, in one place: where the data is, the fixtures that find it, a real `bentoml serve` on
a free port (`Server`), the CLI in a child process (`run_segsvc`), processes that cannot import torch
(`BLOCK_TORCH`), and the CamVid mosaics (large images made of real photographs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from segsvc.data.samples import photo_mosaic

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEGSVC_SHARED", ROOT.parent / "shared"))
WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet.safetensors"
CAMVID_MINI = SHARED / "datasets" / "camvid_mini"
BENTOML = str(Path(sys.executable).parent / "bentoml")
MAX_BYTES = 3_000_000  # the test servers' limits (SEGSVC_MAX_BYTES, SEGSVC_MAX_PIXELS)
MAX_PIXELS = 5_000_000

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

# A sitecustomize for child processes: inference must run with torch, Lightning and albumentations unimportable.
BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "pytorch_lightning", "lightning", "albumentations"):
            raise ImportError(f"{name} is blocked: inference must not import it")
sys.meta_path.insert(0, Block())
"""


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set SEGSVC_SHARED)")
    return path


@pytest.fixture(scope="session")
def imagenet_weights() -> Path:
    return require(WEIGHTS)


@pytest.fixture(scope="session")
def camvid_mini() -> Path:
    return require(CAMVID_MINI)


@pytest.fixture(scope="session")
def shared() -> Path:
    return require(SHARED)


def camvid_mosaic(camvid_mini: Path, size: int = 2048, height: int | None = None) -> np.ndarray:
    """A size x size (or size x `height`) image of camvid_mini's photographs at the scale the model was trained on."""
    photos = sorted(p for p in camvid_mini.glob("*/*.png") if "annot" not in p.parent.name)
    return photo_mosaic(photos, size, size if height is None else height)


def run_segsvc(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`segsvc ARGS` in a child process, as a user runs it (`python -m segsvc.training.cli`: the console script's main)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "segsvc.training.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def segsvc_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """`segsvc ARGS` in this process (the same main() the console script calls): (exit code, stdout, stderr)."""
    from segsvc.training.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exited:
        code = exited.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def block_torch_env(folder: Path) -> dict[str, str]:
    """An environment whose Python processes cannot import torch, Lightning or albumentations (sitecustomize in `folder`)."""
    (folder / "sitecustomize.py").write_text(BLOCK_TORCH)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`bentoml serve` from the repository on a free loopback port, its own BentoML home, until `stop`."""

    def __init__(self, home: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"serve-{self.port}.log"
        environment = {
            **os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT),
            "SEGSVC_MAX_BYTES": str(MAX_BYTES), "SEGSVC_MAX_PIXELS": str(MAX_PIXELS), "SEGSVC_WORKERS": "2", **env,
        }  # fmt: skip
        self.process = subprocess.Popen(
            [BENTOML, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=environment, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or busy starting
                pass
            time.sleep(0.5)
        self.stop()
        raise AssertionError("server not ready in 180 s:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        self.process.wait(timeout=30)

    def healthy(self) -> bool:
        return requests.get(self.url + "/readyz", timeout=10).status_code == 200


def post(server: Server, route: str, data: bytes, content_type: str = "image/png", **kwargs) -> requests.Response:
    return requests.post(server.url + route, data=data, headers={"Content-Type": content_type, **kwargs.pop("headers", {})}, timeout=120, **kwargs)


def process_environments(marker: str) -> dict[str, dict[str, str]]:
    """The environments of this machine's processes whose environment holds `marker` ("NAME=value"), by command line."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            entries = (proc / "environ").read_bytes().split(b"\0")
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # not a process, or gone
            continue
        if marker.encode() in entries:
            found[f"{proc.name} {command}"] = dict(e.decode().split("=", 1) for e in entries if b"=" in e)
    return found
