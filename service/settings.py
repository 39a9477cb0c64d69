"""The service's settings: every `SEGSVC_*` environment variable, read once, here, typed.

`bentoml serve` reads them when it imports the service, before any worker starts; a bad value stops it with
one line naming the variable and what it accepts. `SETTINGS` is the table the serving guide shows
(docs/serving.md, Settings; a test keeps the two the same).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from segsvc.io.images import DEFAULT_MAX_PIXELS
from segsvc.runtime.forms import BACKENDS

DEFAULT_MODEL_TAG = "segsvc-camvid:latest"
DEFAULT_MAX_BYTES = 20 * 2**20
# Two 7200x5400 images and room for small ones: at most about a minute of work, half the traffic timeout.
# Measured, 1 engine thread a worker: a 39 MP image took 26 s on a 2-core CPU (Performance, Large images);
# on an AVX-512 VNNI+BF16 EPYC (openvino-int8-bf16) two workers answered theirs in 11-24 s under a burst
# (benchmarks/bench_overload.py). A worker's memory is one image in flight plus the uploads of the rest.
DEFAULT_MAX_QUEUED_PIXELS = 80_000_000
AUTO_DECISION = "SEGSVC_AUTO_DECISION"


class SettingError(ValueError):
    """A setting's value that cannot be used, naming the variable and what it accepts."""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def workers(text: str) -> int | str:
    return text if text == "cpu_count" else positive_int(text)


def backend(text: str) -> str:
    if text not in BACKENDS:
        raise ValueError
    return text


def text(value: str) -> str:
    if not value.strip():
        raise ValueError
    return value.strip()


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[str], Any]
    accepts: str
    meaning: str


SETTINGS = (
    Setting("SEGSVC_MODEL_TAG", DEFAULT_MODEL_TAG, text, "a model store tag", "model store tag to serve (`segsvc-bento import` puts models there)"),
    Setting("SEGSVC_BACKEND", "auto", backend, "one of " + ", ".join(BACKENDS), "`auto` (the eligible form that runs best on this CPU, on one size and on new sizes, timed once at start: [Engines](performance.md#engines-what-runs-the-model)), or one form; `torch` is the only one that imports torch"),
    Setting("SEGSVC_WORKERS", "cpu_count", workers, "a whole number >= 1, or cpu_count", "worker processes"),
    Setting("SEGSVC_THREADS", 1, positive_int, "a whole number >= 1", "engine threads in each worker"),
    Setting("SEGSVC_MAX_BYTES", DEFAULT_MAX_BYTES, positive_int, "a whole number of bytes >= 1", "request body limit (413 over it)"),
    Setting("SEGSVC_MAX_PIXELS", DEFAULT_MAX_PIXELS, positive_int, "a whole number of pixels >= 1", "decoded pixel limit, checked from the header before decoding (413)"),
    Setting("SEGSVC_MAX_QUEUED_PIXELS", DEFAULT_MAX_QUEUED_PIXELS, positive_int, "a whole number of pixels >= 1", "per worker: pixels admitted and not yet answered; past it, 503 with `Retry-After` ([Under load](#under-load))"),
    Setting("SEGSVC_API_KEY", None, text, "a non-empty key", "when set, requests need `Authorization: Bearer <key>` (401 otherwise)"),
    Setting(AUTO_DECISION, None, json.loads, "JSON written by `bentoml serve`", "not yours to set: auto's choice, made once by `bentoml serve` and inherited by its workers"),
)


@dataclass(frozen=True)
class Settings:
    """The values, one attribute a variable: SEGSVC_MAX_BYTES is `max_bytes`."""

    model_tag: str
    backend: str
    workers: int | str
    threads: int
    max_bytes: int
    max_pixels: int
    max_queued_pixels: int
    api_key: str | None
    auto_decision: dict | None


def read_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """Every setting, from `environ` or its default; unset or blank means the default."""
    values = {}
    for setting in SETTINGS:
        given = environ.get(setting.name, "")
        if not given.strip():
            values[attribute(setting)] = setting.default
            continue
        try:
            values[attribute(setting)] = setting.parse(given)
        except ValueError:
            raise SettingError(f"{setting.name}={given!r}: expected {setting.accepts}") from None
    return Settings(**values)


def attribute(setting: Setting) -> str:
    return setting.name.removeprefix("SEGSVC_").lower()


def load() -> Settings:
    """`read_settings` of this process's environment; a bad value stops the process with one line."""
    try:
        return read_settings()
    except SettingError as error:
        raise SystemExit(f"segsvc: {error}") from None


def settings_table() -> str:
    """The Markdown table of the settings, as docs/serving.md shows it."""
    rows = ["| setting (environment) | default | accepts | meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = "unset" if setting.default is None else f"`{setting.default}`"
        rows.append(f"| `{setting.name}` | {default} | {setting.accepts} | {setting.meaning} |")
    return "\n".join(rows)


CURRENT = load()
