"""HTTP plumbing for the service: reading a size-capped image from a request, auth, JSON errors."""

from __future__ import annotations

import hmac
import io
import os

import numpy as np
from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse

from segsvc.images import DEFAULT_MAX_PIXELS, ImageError, decode_image

DEFAULT_MAX_BYTES = 20 * 2**20


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


MAX_BYTES = env_int("SEGSVC_MAX_BYTES", DEFAULT_MAX_BYTES)
MAX_PIXELS = env_int("SEGSVC_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def check_auth(request: Request) -> JSONResponse | None:
    """With $SEGSVC_API_KEY set, requests need `Authorization: Bearer <key>`."""
    key = os.environ.get("SEGSVC_API_KEY")
    if not key:
        return None
    given = request.headers.get("authorization", "")
    if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), key.encode()):
        return JSONResponse(
            {"error": "missing or wrong API key: send 'Authorization: Bearer <key>'", "status": 401},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it passes MAX_BYTES (before it is all read)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BYTES:
        raise ImageError(f"request body is {declared} bytes, over the limit of {MAX_BYTES}", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BYTES:
            raise ImageError(f"request body is over the limit of {MAX_BYTES} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_image(request: Request) -> np.ndarray:
    """An RGB array from the multipart field `image`, or from the raw body (any image content type)."""
    body = await read_body(request)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        request._body = body  # starlette parses the form from the cached body
        try:
            form = await request.form(max_part_size=MAX_BYTES)
        except Exception as exc:  # malformed multipart bodies raise several starlette/multipart types
            raise ImageError(f"malformed multipart body: {exc}") from exc
        part = form.get("image")
        if part is None:
            raise ImageError("multipart body has no field named 'image'")
        data = await part.read() if hasattr(part, "read") else str(part).encode()
    else:
        data = body
    return decode_image(data, MAX_PIXELS)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # masks compress well anyway; latency matters more
    return buffer.getvalue()
