"""Slots: a FIFO concurrency limit that never leaks capacity, also under cancellation."""

from __future__ import annotations

import asyncio

import pytest

from processor.slots import Slots


async def test_at_most_limit_holders_and_fifo_order() -> None:
    """Never more than the limit hold a slot at once, and waiters get slots in arrival order."""
    slots = Slots(2)
    holding = 0
    peak = 0
    order: list[int] = []
    gate = asyncio.Event()

    async def worker(i: int) -> None:
        nonlocal holding, peak
        async with slots:
            order.append(i)
            holding += 1
            peak = max(peak, holding)
            await gate.wait()
            holding -= 1

    tasks = [asyncio.create_task(worker(i)) for i in range(6)]
    await asyncio.sleep(0)  # let all six start (and four queue)
    assert (holding, slots.waiting) == (2, 4)
    gate.set()
    await asyncio.gather(*tasks)
    assert peak == 2
    assert order == [0, 1, 2, 3, 4, 5]
    assert slots.free == 2


async def test_a_cancelled_waiter_is_skipped() -> None:
    """A waiter cancelled while waiting is passed over; the next waiter gets the slot."""
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    behind = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    slots.release()
    await behind  # the slot went past the cancelled waiter
    assert waiter.cancelled()
    slots.release()
    assert slots.free == 1


async def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    """A waiter cancelled just after it was handed a slot hands it to the next waiter."""
    slots = Slots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # handed to `first`, which has not run yet...
    first.cancel()  # ...and is cancelled before it does
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)
    slots.release()
    assert slots.free == 1


def test_limit_must_be_positive() -> None:
    """A limit below one is refused."""
    with pytest.raises(ValueError, match="limit"):
        Slots(0)
