"""Admission by work, one inference at a time, smallest first, and no work for requests nobody waits for.

Each worker admits a request while the pixels it has already admitted (in flight and waiting) plus the
request's own, read from the image header before decoding, stay under `MAX_QUEUED_PIXELS`; an image over
the bound is still admitted when the worker has nothing queued. The rest are answered 503 at once with
`Retry-After` (counting requests alone cannot work: one 39 MP image is the work of 230 480x360 ones).
Admitted requests hold only their upload until their turn: the image is decoded inside it.

A turn goes to the smallest waiting request, and a tiled image in flight pauses between tiles while an
untiled one waits, so a 480x360 request is not stuck behind minutes of large ones. A request whose client
has gone, or that has waited to its deadline, leaves the queue without being computed, or stops at its
next tile. The queue is on `/metrics`: depth, queued pixels, requests rejected and dropped.
"""

from __future__ import annotations

import functools
import io
import math
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import anyio
from PIL import Image

from segsvc.runtime.predict import TILE_ABOVE_PIXELS, return_memory_to_os
from . import settings

DEADLINE_MARGIN_S = 2.0  # give up this long before BentoML's traffic timeout answers 504
SECONDS_PER_PIXEL = 0.7e-6  # the first Retry-After estimate, until this worker has timed its own work


class Dropped(Exception):
    """A request left the queue uncomputed, or stopped between tiles: its client has gone or its time is up."""


@dataclass(eq=False)
class Ticket:
    """One admitted request: its work in pixels (0 when the header could not be read) and its deadline."""

    pixels: int
    deadline: float
    arrived: float = field(default_factory=time.monotonic)
    gone: bool = False  # the client disconnected
    started: bool = False  # it has had a turn: its image was decoded

    def check(self) -> None:
        """Raise Dropped when nobody waits for this request's answer any more."""
        if self.gone:
            raise Dropped("the client disconnected")
        if time.monotonic() > self.deadline:
            raise Dropped(f"waited {time.monotonic() - self.arrived:.0f} s, past the deadline; retry later")

    def order(self) -> tuple[bool, bool, int, float]:
        """Untiled images first (they cannot pause), then a paused tiled one, then the smallest, the oldest."""
        return self.pixels > TILE_ABOVE_PIXELS, not self.started, self.pixels, self.arrived


@functools.cache
def metrics() -> dict:
    """The queue's Prometheus series, created on first use: inside the worker, after BentoML has set up
    prometheus_client's multiprocess directory, so that /metrics adds up every worker's."""
    from prometheus_client import Counter, Gauge

    dropped = Counter("segsvc_requests_dropped", "requests not computed to the end", ["reason", "stage"])
    for reason in ("disconnected", "deadline"):
        for stage in ("waiting", "computing"):
            dropped.labels(reason, stage)  # listed at 0 from the start
    return {
        "depth": Gauge("segsvc_queue_depth", "requests admitted and not finished", multiprocess_mode="livesum"),
        "pixels": Gauge("segsvc_queue_pixels", "pixels of the requests admitted and not finished", multiprocess_mode="livesum"),
        "rejected": Counter("segsvc_requests_rejected", "requests answered 503 at once: the queue was full"),
        "dropped": dropped,
    }


class WorkQueue:
    """One worker's admitted requests and its one inference slot."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self.tickets: list[Ticket] = []  # admitted, not finished
        self.waiting: list[Ticket] = []  # asking for the slot
        self.running: Ticket | None = None
        self.changed = anyio.Event()
        self.seconds_per_pixel = SECONDS_PER_PIXEL
        self.large_left = False  # a tiled image has finished since the heap was last trimmed

    @property
    def pixels(self) -> int:
        return sum(ticket.pixels for ticket in self.tickets)

    def admit(self, pixels: int, timeout: float) -> Ticket | None:
        """A ticket for `pixels` of work, or None (counted) when the queue is too full for it."""
        if self.tickets and self.pixels + pixels > self.max_pixels:
            metrics()["rejected"].inc()
            return None
        ticket = Ticket(pixels, time.monotonic() + timeout - DEADLINE_MARGIN_S)
        self.tickets.append(ticket)
        self.report()
        return ticket

    def retry_after(self) -> int:
        """Seconds until this worker has done what it has queued, by its own pace so far."""
        return max(1, math.ceil(self.pixels * self.seconds_per_pixel))

    def leave(self, ticket: Ticket) -> None:
        """The request is answered (or abandoned): its work leaves the queue. A queue that empties after a
        large image hands its memory back (the images, masks and responses are freed by now); trimming
        after every small request cost requests/s and gave nothing back worth having."""
        if ticket.gone or time.monotonic() > ticket.deadline:
            reason = "disconnected" if ticket.gone else "deadline"
            metrics()["dropped"].labels(reason, "computing" if ticket.started else "waiting").inc()
        self.tickets.remove(ticket)
        self.report()
        self.wake()
        self.large_left = self.large_left or ticket.pixels > TILE_ABOVE_PIXELS
        if not self.tickets and self.large_left:
            return_memory_to_os()
            self.large_left = False

    def timed(self, ticket: Ticket, seconds: float) -> None:
        if ticket.pixels > TILE_ABOVE_PIXELS:  # the pace of the work that fills a queue
            self.seconds_per_pixel = seconds / ticket.pixels

    @asynccontextmanager
    async def turn(self, ticket: Ticket) -> AsyncIterator[None]:
        """Hold the slot: wait until it is free and `ticket` comes first; raise Dropped if it never will."""
        await self.acquire(ticket)
        try:
            yield
        finally:
            self.release(ticket)

    async def pause(self, ticket: Ticket) -> None:
        """Between tiles: give the slot to the untiled images waiting, then take it back; or raise Dropped."""
        ticket.check()
        if any(other.order() < ticket.order() for other in self.waiting):
            self.release(ticket)
            await self.acquire(ticket)

    async def acquire(self, ticket: Ticket) -> None:
        self.waiting.append(ticket)
        try:
            while self.running is not None or min(self.waiting, key=Ticket.order) is not ticket:
                ticket.check()
                changed = self.changed
                with anyio.move_on_after(max(ticket.deadline - time.monotonic(), 0) + 0.01):
                    await changed.wait()
            ticket.check()
        finally:
            self.waiting.remove(ticket)
        self.running, ticket.started = ticket, True

    def release(self, ticket: Ticket) -> None:
        if self.running is ticket:
            self.running = None
            self.wake()

    def wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def report(self) -> None:
        metrics()["depth"].set(len(self.tickets))
        metrics()["pixels"].set(self.pixels)


QUEUE = WorkQueue(settings.CURRENT.max_queued_pixels)
CURRENT: ContextVar[Ticket | None] = ContextVar("segsvc_ticket", default=None)  # the request's, set by the gate


def header_pixels(image: bytes, max_pixels: int) -> int:
    """The pixels an image file declares in its header (Pillow reads no more), or 0 if it has no readable
    one or more than `max_pixels`: the decoder refuses those before decoding, and refusing costs nothing."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            width, height = Image.open(io.BytesIO(image)).size
    except Exception:  # noqa: BLE001 - any unreadable header: the decoder explains it, in the request's turn
        return 0
    return width * height if width * height <= max_pixels else 0
