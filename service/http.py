"""What BentoML does not do for us, as one ASGI middleware in front of the API routes, plus the API's errors.

BentoML parses typed inputs itself, so three things must happen before it reads a request:
- the API key (`Authorization: Bearer <key>`, the scheme name matched case-insensitively, RFC 7235 2.1);
- the byte limit: 413 from Content-Length, or as soon as a streamed body passes it, before it is all read;
- a raw image body (`Content-Type: image/png`, ...) becomes the multipart field `image`, and the query string
  its other fields, so that curl's `--data-binary` keeps working next to `-F image=@...` and the clients;
  a parameter given more than once becomes one JSON list (BentoML would keep the last);
- admission (`service.admission`): the image's header says its pixels, and a worker whose queue is full
  answers 503 at once; an admitted request runs with its ticket, and a client that disconnects cancels it.
And after: /docs.json gets what BentoML cannot declare (`service.openapi`); and BentoML answers a 4xx
exception as `[{"error": ...}]` and a validation error with pydantic's details: every JSON error leaves
here as `{"error": "...", "status": N}` (a 503 with `Retry-After`).
"""

from __future__ import annotations

import hmac
import json
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Collection
from http import HTTPStatus
from urllib.parse import parse_qsl

import anyio
from bentoml.exceptions import BentoMLException, InvalidArgument
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segsvc.io.images import DEFAULT_MAX_PIXELS, ImageError
from service.admission import CURRENT, QUEUE, Ticket, header_pixels
from service.openapi import SPEC_PATH, complete_spec

DEFAULT_MAX_BYTES = 20 * 2**20
FORM_TYPES = ("multipart/form-data", "application/json")  # what BentoML parses; any other body is an image


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


MAX_BYTES = env_int("SEGSVC_MAX_BYTES", DEFAULT_MAX_BYTES)
MAX_PIXELS = env_int("SEGSVC_MAX_PIXELS", DEFAULT_MAX_PIXELS)


class PayloadTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Busy(BentoMLException):
    error_code = HTTPStatus.SERVICE_UNAVAILABLE


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

    def __init__(self, app: ASGIApp, paths: Collection[str], image_paths: Collection[str], timeout: float) -> None:
        self.app = app
        self.paths = frozenset([*paths, SPEC_PATH])
        self.image_paths = frozenset(image_paths)
        self.timeout = timeout  # BentoML's traffic timeout: a request waiting this long is dropped

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        if scope["path"] == SPEC_PATH:
            return await self.app(scope, receive, completed_spec(send))
        headers = Headers(scope=scope)
        if not authorized(headers.get("authorization", ""), os.environ.get("SEGSVC_API_KEY")):
            message = "missing or wrong API key: send 'Authorization: Bearer <key>'"
            return await send_error(send, 401, message, [(b"www-authenticate", b"Bearer")])
        allowed = ("GET", "POST") if scope["path"] not in self.image_paths else ("POST",)
        if scope["method"] not in allowed:
            message = f"{scope['method']} is not allowed on {scope['path']}"
            return await send_error(send, 405, message, [(b"allow", ", ".join(allowed).encode())])
        if scope["method"] != "POST":
            return await self.app(scope, receive, json_errors(send))
        try:
            body = await read_body(headers, receive)
        except ImageError as error:
            return await send_error(send, error.status, str(error))
        content_type = headers.get("content-type", "")
        image = body
        if not content_type.startswith(FORM_TYPES):
            scope, body = as_multipart(scope, body, query_fields(scope))
        elif content_type.startswith("multipart/"):
            boundary = parse_options_header(content_type)[1].get(b"boundary")
            if not boundary:
                return await send_error(send, 400, "malformed multipart body: no boundary in the Content-Type")
            if scope["path"] in self.image_paths:
                problem, image, fields = read_form(body, boundary)
                if problem is not None:
                    return await send_error(send, 400, problem)
                if len({name for name, _ in fields}) < len(fields):  # a parameter given more than once
                    scope, body = as_multipart(scope, image, fields)
        if scope["path"] not in self.image_paths:
            return await self.app(scope, replay(body), json_errors(send))
        ticket = QUEUE.admit(header_pixels(image, MAX_PIXELS), self.timeout)
        if ticket is None:
            message = f"busy: this worker has {QUEUE.pixels} pixels of work queued; retry later"
            return await send_error(send, 503, message)
        await serve_admitted(self.app, scope, receive, replay(body), json_errors(send), ticket)


async def serve_admitted(app: ASGIApp, scope: Scope, receive: Receive, body: Receive, send: Send, ticket: Ticket) -> None:
    """Run the request with its ticket (`admission.CURRENT`), listening on the connection meanwhile: a client
    that disconnects marks the ticket and cancels the request, so it is never computed, or stops at a tile."""
    answered = False

    async def tracked(message: Message) -> None:
        nonlocal answered
        answered = answered or (message["type"] == "http.response.body" and not message.get("more_body", False))
        await send(message)

    async def watch(request: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":  # the server's receive: after the body, only this
            pass
        if not answered:  # the server also says "disconnect" once the response is complete
            ticket.gone = True
            QUEUE.wake()
            request.cancel()

    token = CURRENT.set(ticket)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(watch, group.cancel_scope)
            await app(scope, body, tracked)
            group.cancel_scope.cancel()
    finally:
        CURRENT.reset(token)
        QUEUE.leave(ticket)


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


def as_multipart(scope: Scope, image: bytes, fields: list[tuple[str, str]]) -> tuple[Scope, bytes]:
    """An image and its parameters -> the multipart form BentoML parses: the field `image`, and one field a
    parameter. A parameter given more than once becomes one JSON list: BentoML would keep only the last."""
    values: dict[str, list[str]] = {}
    for name, value in fields:
        if name != "image":
            values.setdefault(name, []).append(value)
    boundary = uuid.uuid4().hex.encode()
    parts = []
    for name, given in values.items():
        value = given[0] if len(given) == 1 else json.dumps([json_or_text(v) for v in given])
        parts.append(part_head(boundary, name) + value.encode(errors="surrogateescape") + b"\r\n")
    body = b"".join([*parts, part_head(boundary, "image", b'; filename="image"'), image, b"\r\n--" + boundary + b"--\r\n"])
    headers = MutableHeaders(scope={"type": "http", "headers": list(scope["headers"])})
    headers["content-type"] = f"multipart/form-data; boundary={boundary.decode()}"
    headers["content-length"] = str(len(body))
    return {**scope, "headers": headers.raw}, body


def part_head(boundary: bytes, name: str, more: bytes = b"") -> bytes:
    return b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode(errors="surrogateescape") + b'"' + more + b"\r\n\r\n"


def json_or_text(value: str) -> object:
    """A form value as BentoML reads one: JSON if it parses, else the text."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def query_fields(scope: Scope) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"))


def read_form(body: bytes, boundary: bytes) -> tuple[str | None, bytes, list[tuple[str, str]]]:
    """Why BentoML should not parse this multipart body, or None; the `image` field's bytes; the other
    fields. BentoML's parser answers a text `image` field by fetching it as a URL, and any other field that
    is not text with a 500: refused here with a 400."""
    problems, image, fields = [], None, []
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, content = part.partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        found = re.search(rb'name="([^"]*)"', head)
        name = found.group(1).decode(errors="surrogateescape") if found else ""
        if name == "image":
            image = content
            if b"filename=" not in head:
                problems.append("multipart field 'image' must be a file upload, not text or a URL")
            continue
        try:
            fields.append((name, content.decode("utf-8")))
        except UnicodeDecodeError:
            problems.append(f"multipart field {name!r} is not text (the image goes in the field 'image')")
    if image is None:
        return "multipart body has no field named 'image'", b"", []
    return (problems[0] if problems else None), image, fields


def replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def rewritten(send: Send, wanted: Callable[[Message], bool], rewrite: Callable[[Message, bytes], Awaitable[None]]) -> Send:
    """`send` for a response that, when `wanted(its start message)`, is buffered whole and handed to
    `rewrite(start, body)` to send instead."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and wanted(message):
            start = message
            return
        if message["type"] == "http.response.body" and start is not None:
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await rewrite(start, b"".join(chunks))
            return
        await send(message)

    return wrapped


def json_errors(send: Send) -> Send:
    """Send a JSON error response as {"error": "...", "status": N}."""

    def wanted(start: Message) -> bool:
        return start["status"] >= 400 and Headers(raw=start["headers"]).get("content-type", "").startswith("application/json")

    return rewritten(send, wanted, lambda start, body: send_error(send, start["status"], error_message(body)))


def completed_spec(send: Send) -> Send:
    """Send the OpenAPI document as `service.openapi.complete_spec` of BentoML's."""

    async def rewrite(start: Message, body: bytes) -> None:
        body = json.dumps(complete_spec(json.loads(body))).encode()
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return rewritten(send, lambda start: start["status"] == 200, rewrite)


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
    """The JSON error; a 503 says when to retry: when this worker will have done what it has queued."""
    body = json.dumps({"error": message, "status": status}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    if status == 503:
        raw.append((b"retry-after", str(QUEUE.retry_after()).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
