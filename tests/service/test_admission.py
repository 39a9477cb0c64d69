"""The work queue in-process: admission by pixels, smallest first, dropped past the deadline or when the client left."""

from __future__ import annotations

import time

import anyio
import pytest

from service.admission import Dropped, Ticket, WorkQueue

LARGE, SMALL = 7200 * 5400, 480 * 360


def test_admission_by_pixels_and_an_oversized_image_alone():
    queue = WorkQueue(max_pixels=2 * LARGE)
    first = queue.admit(3 * LARGE, timeout=120)  # over the bound, but the queue is empty
    assert first is not None and queue.admit(SMALL, timeout=120) is None
    queue.leave(first)
    tickets = [queue.admit(LARGE, timeout=120) for _ in range(3)]
    assert tickets[2] is None and queue.pixels == 2 * LARGE
    assert queue.retry_after() >= 1


def test_the_smallest_waiting_request_goes_first_and_a_tiled_one_pauses_for_it():
    async def scenario() -> list[str]:
        queue, order = WorkQueue(max_pixels=10 * LARGE), []
        large, later_large, small = (queue.admit(pixels, timeout=120) for pixels in (LARGE, LARGE, SMALL))

        async def run(name: str, ticket: Ticket) -> None:
            async with queue.turn(ticket):
                order.append(name)
                if ticket is large:
                    await anyio.sleep(0.1)  # the others arrive and wait
                    await queue.pause(ticket)  # between tiles: the small one goes first
                    order.append("large resumed")

        async with anyio.create_task_group() as group:
            group.start_soon(run, "large", large)
            await anyio.sleep(0.01)
            group.start_soon(run, "later large", later_large)
            group.start_soon(run, "small", small)
        return order

    assert anyio.run(scenario) == ["large", "small", "large resumed", "later large"]


@pytest.mark.parametrize("gone", [True, False])
def test_a_request_nobody_waits_for_is_dropped_uncomputed(gone):
    async def scenario() -> None:
        queue = WorkQueue(max_pixels=10 * LARGE)
        running, waiting = queue.admit(LARGE, timeout=120), queue.admit(LARGE, timeout=120)
        if gone:
            waiting.gone = True
        else:
            waiting.deadline = time.monotonic() + 0.05
        async with queue.turn(running):
            with pytest.raises(Dropped):
                async with queue.turn(waiting):
                    raise AssertionError("computed")

    anyio.run(scenario)
