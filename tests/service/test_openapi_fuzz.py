"""schemathesis, an external fuzzer, reads the served OpenAPI document and finds the service doing what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, Server

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("bentoml_home_fuzz"), SEGSVC_WORKERS="1", SEGSVC_BACKEND="onnxruntime")
    yield server
    server.stop()


def test_the_document_declares_what_is_served(server):
    spec = requests.get(server.url + "/docs.json", timeout=10).json()
    assert {"get", "post"} <= set(spec["paths"]["/model"])
    for route in ("/segment", "/segment_json", "/overlay"):
        body = spec["paths"][route]["post"]["requestBody"]
        assert body["required"] and body["content"]["multipart/form-data"]["encoding"]["image"]["contentType"] == "image/*"
        assert {"400", "413", "503"} <= set(spec["paths"][route]["post"]["responses"])
        assert "Retry-After" in spec["paths"][route]["post"]["responses"]["503"]["headers"]


def test_schemathesis_finds_no_failure(server, tmp_path):
    """Every check (server errors, schema-valid requests refused, schema-violating ones accepted, statuses,
    content types, methods...) over every operation; fixed seeds, so that a failure reproduces."""
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.service.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
    for seed in ("1", "2"):
        result = subprocess.run(
            [SCHEMATHESIS, "run", server.url + "/docs.json", "--workers", "1", "--seed", seed, "--checks", "all"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert "No issues found" in result.stdout, result.stdout[-3000:]
