"""What an `image/*` form field holds, for schemathesis (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks): real
PNG and JPEG files of random sizes and colours. Without it, any byte string would pass for an image."""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image


@st.composite
def image_file(draw: st.DrawFn, fmt: str) -> bytes:
    size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    colour = tuple(draw(st.integers(0, 255)) for _ in range(3))
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


schemathesis.openapi.media_type("image/png", image_file("PNG"))
schemathesis.openapi.media_type("image/jpeg", image_file("JPEG"))


@schemathesis.hook
def filter_body(ctx: schemathesis.HookContext, body: object) -> bool:
    """Multipart sends a list as one part per item, so an empty list as no part at all: the same request as
    one without the field, whatever type the schema gives it. Such cases prove nothing either way."""
    return not (isinstance(body, dict) and any(value == [] for value in body.values()))
