"""The service's settings (`service.settings`): read once, typed, a bad value one line from `bentoml serve`."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from service.settings import SETTINGS, SettingError, read_settings, settings_table
from tests.conftest import BENTOML, ROOT, free_port


def test_defaults_and_types():
    values = read_settings({})
    assert (values.model_tag, values.backend, values.workers, values.threads) == ("segsvc-camvid:latest", "auto", "cpu_count", 1)
    assert values.api_key is None and values.auto_decision is None
    given = read_settings({"SEGSVC_WORKERS": "3", "SEGSVC_MAX_BYTES": " 1000 ", "SEGSVC_API_KEY": "k", "SEGSVC_THREADS": ""})
    assert (given.workers, given.max_bytes, given.api_key, given.threads) == (3, 1000, "k", 1)  # blank: the default


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SEGSVC_THREADS", "two", "a whole number >= 1"),
        ("SEGSVC_THREADS", "0", "a whole number >= 1"),
        ("SEGSVC_WORKERS", "all", "a whole number >= 1, or cpu_count"),
        ("SEGSVC_MAX_QUEUED_PIXELS", "lots", "a whole number of pixels >= 1"),
        ("SEGSVC_MAX_BYTES", "1.5e6", "a whole number of bytes >= 1"),
        ("SEGSVC_BACKEND", "tensorrt", "one of auto, onnxruntime"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_accepts(name, value, expected):
    with pytest.raises(SettingError, match=re.escape(f"{name}={value!r}: expected {expected}")):
        read_settings({name: value})


@pytest.mark.parametrize(("name", "value"), [("SEGSVC_THREADS", "two"), ("SEGSVC_MAX_QUEUED_PIXELS", "lots"), ("SEGSVC_MAX_PIXELS", "-5")])
def test_bentoml_serve_stops_on_a_bad_setting_with_one_line(name, value, tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT), name: value}
    result = subprocess.run([BENTOML, "serve", "--port", str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(f"segsvc: {name}={value!r}: expected"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_the_serving_guide_shows_every_setting():
    guide = (ROOT / "docs" / "serving.md").read_text()
    assert settings_table() in guide, "docs/serving.md's Settings table is not service.settings.settings_table()"
    assert len(SETTINGS) == len({s.name for s in SETTINGS})


def test_the_service_reads_no_setting_of_its_own():
    """Every SEGSVC_* variable is read in service/settings.py and nowhere else in service/."""
    for path in (ROOT / "service").glob("*.py"):
        if path.name != "settings.py":
            assert not re.search(r"environ(\.get)?\(?\[?[\"']SEGSVC_", path.read_text()), path
