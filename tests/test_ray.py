"""The documented Ray Data example (docs/examples/ray_predict.py) on a local Ray cluster: its masks are
`segsvc predict`'s, image for image."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT

pytest.importorskip("ray")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_ray_example_writes_the_masks_segsvc_predict_writes(tmp_path, camvid_mini):
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    for i, path in enumerate(sorted((camvid_mini / "test").iterdir())):
        target = photos / ("nested" if i % 2 else "") / path.name
        target.write_bytes(path.read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
    result = run("docs/examples/ray_predict.py", "--model", "default", "--input", str(photos), "--output", str(tmp_path / "ray"), "--actors", "2", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote 4 masks" in result.stdout, result.stdout
    result = run("-m", "segsvc.training.cli", "predict", "--model", "default", "--input", str(photos), "--output", str(tmp_path / "cli"))
    assert result.returncode == 0, result.stderr[-3000:]
    cli_masks = sorted((tmp_path / "cli" / "masks").rglob("*.png"))
    assert len(cli_masks) == 4
    for cli_mask in cli_masks:
        ray_mask = tmp_path / "ray" / cli_mask.relative_to(tmp_path / "cli")
        expected, got = Image.open(cli_mask), Image.open(ray_mask)
        assert got.mode == "P" and got.getpalette() == expected.getpalette()
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=str(ray_mask))
