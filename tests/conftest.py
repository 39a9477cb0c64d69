from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEGSVC_SHARED", ROOT.parent / "shared"))
WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet.safetensors"
CAMVID_MINI = SHARED / "datasets" / "camvid_mini"

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


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
