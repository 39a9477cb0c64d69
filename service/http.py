"""What BentoML does not do for us, as one ASGI middleware in front of the API routes, plus the API's errors.

BentoML parses typed inputs itself, so three things must happen before it reads a request:
- the API key (`Authorization: Bearer <key>`, the scheme name matched case-insensitively, RFC 7235 2.1);
- the byte limit: 413 from Content-Length, or as soon as a streamed body passes it, before it is all read;
- a raw image body (`Content-Type: image/png`, ...) becomes the multipart field `image`, and the query string
  its other fields, so that curl's `--data-binary` keeps working next to `-F image=@...` and the clients.
And one after: BentoML answers a 4xx exception as `[{"error": ...}]` and a validation error with pydantic's
details; every JSON error leaves here as `{"error": "...", "status": N}`.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import uuid
from collections.abc import Collection
from http import HTTPStatus
from urllib.parse import parse_qsl

from bentoml.exceptions import BentoMLException, InvalidArgument
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segsvc.images import DEFAULT_MAX_PIXELS, ImageError

DEFAULT_MAX_BYTES = 20 * 2**20
FORM_TYPES = ("multipart/form-data", "application/json")  # what BentoML parses; any other body is an image


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


MAX_BYTES = env_int("SEGSVC_MAX_BYTES", DEFAULT_MAX_BYTES)
MAX_PIXELS = env_int("SEGSVC_MAX_PIXELS", DEFAULT_MAX_PIXELS)


class PayloadTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def http_error(error: ImageError) -> BentoMLException:
    """The BentoML exception, carrying its HTTP status, for an input the library refused."""
    return PayloadTooLarge(str(error)) if error.status == 413 else InvalidArgument(str(error))


def authorized(header: str, key: str | None) -> bool:
    if not key:
        return True
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


class RequestGate:
    """Auth, byte limit and raw image bodies for `paths` (`image_paths` take an image); JSON errors reshaped."""

    def __init__(self, app: ASGIApp, paths: Collection[str], image_paths: Collection[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.image_paths = frozenset(image_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if not authorized(headers.get("authorization", ""), os.environ.get("SEGSVC_API_KEY")):
            message = "missing or wrong API key: send 'Authorization: Bearer <key>'"
            return await send_error(send, 401, message, [(b"www-authenticate", b"Bearer")])
        if scope["method"] == "POST":
            try:
                body = await read_body(headers, receive)
            except ImageError as error:
                return await send_error(send, error.status, str(error))
            content_type = headers.get("content-type", "")
            if not content_type.startswith(FORM_TYPES):
                scope, body = as_multipart(scope, body)
            elif content_type.startswith("multipart/") and scope["path"] in self.image_paths:
                if (problem := form_problem(body, content_type)) is not None:
                    return await send_error(send, 400, problem)
            receive = replay(body)
        await self.app(scope, receive, json_errors(send))


async def read_body(headers: Headers, receive: Receive) -> bytes:
    """The request body, refused with 413 as soon as it passes MAX_BYTES (before it is all read)."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise ImageError(f"request body is {declared} bytes, over the limit of {MAX_BYTES}", status=413)
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ImageError("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BYTES:
            raise ImageError(f"request body is over the limit of {MAX_BYTES} bytes", status=413)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def as_multipart(scope: Scope, image: bytes) -> tuple[Scope, bytes]:
    """A raw image body and its query string -> the multipart form BentoML parses (field `image` + parameters)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        if name != "image"
    ]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="image"\r\n\r\n'.encode())
    body = b"".join([*parts, image, f"\r\n--{boundary}--\r\n".encode()])
    headers = MutableHeaders(scope={"type": "http", "headers": list(scope["headers"])})
    headers["content-type"] = f"multipart/form-data; boundary={boundary}"
    headers["content-length"] = str(len(body))
    return {**scope, "headers": headers.raw}, body


def form_problem(body: bytes, content_type: str) -> str | None:
    """Why BentoML should not parse this multipart body, or None. Its parser answers a text `image` field by
    fetching it as a URL, and any other field that is not text with a 500: refused here with a 400."""
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        return "malformed multipart body: no boundary in the Content-Type"
    problems, has_image = [], False
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, content = part.partition(b"\r\n\r\n")
        found = re.search(rb'name="([^"]*)"', head)
        name = found.group(1).decode("latin-1") if found else ""
        if name == "image":
            has_image = True
            if b"filename=" not in head:
                problems.append("multipart field 'image' must be a file upload, not text or a URL")
            continue
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"multipart field {name!r} is not text (the image goes in the field 'image')")
    if not has_image:
        return "multipart body has no field named 'image'"
    return problems[0] if problems else None


def replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def json_errors(send: Send) -> Send:
    """Buffer a JSON error response and send it as {"error": "...", "status": N}."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            content_type = Headers(raw=message["headers"]).get("content-type", "")
            if message["status"] >= 400 and content_type.startswith("application/json"):
                start = message
                return
        elif message["type"] == "http.response.body" and start is not None:
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await send_error(send, start["status"], error_message(b"".join(chunks)))
            return
        await send(message)

    return wrapped


def error_message(body: bytes) -> str:
    """The one readable message in BentoML's error bodies ([{"error"}], {"error", "detail": pydantic errors})."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        return str(data)
    if isinstance(data.get("detail"), list):
        return "; ".join(describe(detail) for detail in data["detail"])
    return str(data.get("error", data))


def describe(detail: dict) -> str:
    where = ".".join(str(part) for part in detail.get("loc", ()))
    if detail.get("type") == "missing":
        return f"request has no field named {where!r}"
    return f"{where}: {detail.get('msg', 'invalid value')}"


async def send_error(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
