"""The HTTP gate: one ASGI middleware in front of the API routes, plus the API's errors.

For every API route:
- the API key (`Authorization: Bearer <key>`, the scheme name matched case-insensitively, RFC 7235 2.1);
- the byte limit: 413 from Content-Length, or as soon as a streamed body passes it, before it is all read.
For the image routes, the request is read and answered here (`answer`, the service's endpoints called
directly), never by BentoML's request path:
- the body is the multipart form (parsed once, by Starlette's parser, as BentoML would) whose file field
  `image` is the image, or a raw image body (`Content-Type: image/png`, ...) with its parameters in the query
  string, so that curl's `--data-binary` works next to `-F image=@...` and the clients; a parameter given
  more than once becomes one list (BentoML would keep the last). A text `image` (BentoML would fetch it as a
  URL) is a 400: no request makes the server fetch anything;
- admission (`service.admission`): the image's header says its pixels, and a worker whose queue is full
  answers 503 at once; an admitted request runs with its ticket, and a client that disconnects cancels it.
And after: /docs.json gets what BentoML cannot declare (`service.openapi`); and BentoML answers a 4xx
exception as `[{"error": ...}]` and a validation error with pydantic's details: every JSON error leaves
here as `{"error": "...", "status": N}` (a 503 with `Retry-After`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from http import HTTPStatus
from urllib.parse import parse_qsl

import anyio
from bentoml.exceptions import BentoMLException, InvalidArgument
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segsvc.io.images import ImageError
from . import settings
from .admission import CURRENT, QUEUE, Ticket, header_pixels
from .openapi import SPEC_PATH, complete_spec

# An image endpoint's answer: (route, image bytes, form or query fields) -> (body, content type); raises a
# BentoMLException carrying the HTTP status for what it refuses.
Answer = Callable[[str, bytes, list[tuple[str, str]]], Awaitable[tuple[bytes, str]]]


MAX_BYTES = settings.CURRENT.max_bytes
MAX_PIXELS = settings.CURRENT.max_pixels


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
    """Auth, byte limit, admission and the image endpoints themselves (`answer`) for `paths` (`image_paths`
    take an image); JSON errors reshaped. An image request is read once, here, and answered here: BentoML's
    own request path (its form parser, a temporary file for the upload, per-request signature binding and
    validation, the PNG encoded on the event loop) cost as much CPU per request as the model did."""

    def __init__(self, app: ASGIApp, paths: Collection[str], image_paths: Collection[str], timeout: float, answer: Answer) -> None:
        self.app = app
        self.paths = frozenset([*paths, SPEC_PATH])
        self.image_paths = frozenset(image_paths)
        self.timeout = timeout  # BentoML's traffic timeout: a request waiting this long is dropped
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        if scope["path"] == SPEC_PATH:
            return await self.app(scope, receive, completed_spec(send))
        headers = Headers(scope=scope)
        if not authorized(headers.get("authorization", ""), settings.CURRENT.api_key):
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
        if content_type.startswith("multipart/") and not parse_options_header(content_type)[1].get(b"boundary"):
            return await send_error(send, 400, "malformed multipart body: no boundary in the Content-Type")
        if scope["path"] not in self.image_paths:
            return await self.app(scope, replay(body), json_errors(send))
        if content_type.startswith("multipart/"):
            problem, image, fields = await read_form(headers, body)
            if problem is not None:
                return await send_error(send, 400, problem)
        elif content_type.startswith("application/json"):
            message = "send the image as the multipart file field 'image', or as the raw body with an image content type"
            return await send_error(send, 415, message)
        else:  # a raw image body, its parameters in the query string
            image, fields = body, query_fields(scope)
        ticket = QUEUE.admit(header_pixels(image, MAX_PIXELS), self.timeout)
        if ticket is None:
            message = f"busy: this worker has {QUEUE.pixels} pixels of work queued; retry later"
            return await send_error(send, 503, message)
        await serve_admitted(answering(self.answer, scope["path"], image, fields), scope, receive, send, ticket)


def answering(answer: Answer, path: str, image: bytes, fields: list[tuple[str, str]]) -> ASGIApp:
    """The ASGI app that answers one image request with `answer`: its body, or its exception's status."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body, content_type = await answer(path, image, fields)
        except BentoMLException as error:
            return await send_error(send, int(error.error_code), str(error))
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def serve_admitted(app: ASGIApp, scope: Scope, receive: Receive, send: Send, ticket: Ticket) -> None:
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
            await app(scope, receive, tracked)
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


def json_or_text(value: str) -> object:
    """A form value as BentoML reads one: JSON if it parses, else the text."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def query_fields(scope: Scope) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"))


async def read_form(headers: Headers, body: bytes) -> tuple[str | None, bytes, list[tuple[str, str]]]:
    """Why this multipart body cannot be served (or None), the `image` file's bytes, and the other fields.

    Parsed as BentoML parses a form (Starlette's parser over python-multipart), and only here: `image` must
    be a file upload (a part whose Content-Disposition names a filename), whatever its other headers say; the
    other fields must be text."""

    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(headers, stream(), max_part_size=MAX_BYTES).parse()
    except MultiPartException as error:
        return f"malformed multipart body: {error.message}", b"", []
    image, fields = None, []
    try:
        for name, value in form.multi_items():
            if name == "image":
                if not isinstance(value, UploadFile):
                    return "multipart field 'image' must be a file upload, not text or a URL", b"", []
                image = image if image is not None else await value.read()  # the first, as BentoML took it
            elif isinstance(value, UploadFile):
                try:
                    fields.append((name, (await value.read()).decode("utf-8")))
                except UnicodeDecodeError:
                    return f"multipart field {name!r} is not text (the image goes in the field 'image')", b"", []
            else:
                fields.append((name, value))
    finally:
        await form.close()
    if image is None:
        return "multipart body has no field named 'image'", b"", []
    return None, image, fields


def form_values(fields: list[tuple[str, str]]) -> dict[str, object]:
    """Form or query fields as BentoML reads them: JSON where a value parses as JSON, else the text; a
    field given more than once, one list (BentoML would keep only the last)."""
    given: dict[str, list[str]] = {}
    for name, value in fields:
        given.setdefault(name, []).append(value)
    return {name: json_or_text(v[0]) if len(v) == 1 else [json_or_text(x) for x in v] for name, v in given.items()}


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
