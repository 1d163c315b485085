"""Tests of records taken at once (no lane task) and of the outboxes that keep their order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from processor.inputs import InputRecord
from processor.outcomes import Outcome
from tests.unit.test_engine import (
    P0,
    WAIT_S,
    Coord,
    FakePublisher,
    MakeRig,
    _coord,
    _record,
    make_rig,
)

__all__ = ["make_rig"]  # the fixture, shared with the engine's other tests


class GatedPublisher(FakePublisher):
    """Queues nothing while :attr:`gate` is clear, like a producer whose buffer is full."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered: list[Coord] = []

    async def publish(self, record: InputRecord, outcome: Outcome) -> asyncio.Future[Any]:
        self.entered.append(_coord(record))
        await self.gate.wait()
        return await super().publish(record, outcome)


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def _gate(rig: Any) -> GatedPublisher:
    publisher = GatedPublisher()
    rig.publisher = publisher
    rig.engine._publisher = publisher
    return publisher


async def test_a_record_without_checks_is_judged_as_it_is_submitted(make_rig: MakeRig) -> None:
    """No task and no wait: the pipeline has ended every such record when submit returns,
    and their outcomes are published in offset order."""
    rig = make_rig(ordering="unordered")
    records = [_record(0, offset) for offset in range(3)]
    rig.submit(*records)
    assert rig.pipeline.log == [(kind, (0, o)) for o in range(3) for kind in ("start", "end")]
    assert [await rig.publisher.next_published() for _ in records] == [(0, 0), (0, 1), (0, 2)]
    for record in records:
        await rig.ack(_coord(record))
    assert rig.engine.in_flight == 0
    assert rig.engine.committable() == {P0: 3}


async def test_a_key_keeps_its_order_when_its_first_record_waits_for_checks(
    make_rig: MakeRig,
) -> None:
    """A later record of a busy key waits in its lane; another key's record goes ahead."""
    rig = make_rig(ordering="key")
    first, same_key, other_key = _record(0, 0, b"k"), _record(0, 1, b"k"), _record(0, 2, b"j")
    rig.pipeline.hold(_coord(first))
    rig.submit(first, same_key, other_key)
    assert await rig.publisher.next_published() == (0, 2)
    assert rig.publisher.published.empty()
    rig.pipeline.open(_coord(first))
    assert [await rig.publisher.next_published() for _ in range(2)] == [(0, 0), (0, 1)]


async def test_an_outcome_waiting_for_the_producer_stays_ahead_of_its_key_successor(
    make_rig: MakeRig,
) -> None:
    """A record judged at once whose outcome is not queued yet (the producer is full) is
    published before the next record of its key, even when that one finishes first."""
    rig = make_rig(ordering="key")
    publisher = _gate(rig)
    publisher.gate.clear()
    first, second = _record(0, 0, b"k"), _record(0, 1, b"k")
    rig.pipeline.hold(_coord(second))
    rig.submit(first, second)  # the first is judged now; the second has checks to run
    rig.pipeline.open(_coord(second))
    assert await rig.pipeline.next_starts(2) == {(0, 0), (0, 1)}
    await _until(lambda: not rig.engine._lanes)
    assert publisher.entered == [(0, 0)]  # the second waits behind the first, not beside it
    publisher.gate.set()
    assert [await publisher.next_published() for _ in range(2)] == [(0, 0), (0, 1)]


async def test_a_released_partition_drops_its_unsent_outcomes(make_rig: MakeRig) -> None:
    """Outcomes still in a revoked partition's outbox are never published (the next owner
    redoes their records) and no longer count as in flight."""
    rig = make_rig(ordering="unordered")
    publisher = _gate(rig)
    publisher.gate.clear()
    rig.submit(_record(0, 0), _record(0, 1), _record(1, 0))
    rig.engine.release([P0])
    assert rig.engine.in_flight == 1
    publisher.gate.set()
    assert await publisher.next_published() == (1, 0)
    await rig.ack((1, 0))
    assert await rig.engine.drain(None, WAIT_S)
    assert publisher.published.empty()
    assert set(publisher.acks) == {(1, 0)}
    rig.engine.assign([P0])  # assigned again: its records are taken and published afresh
    rig.submit(_record(0, 0))
    assert await publisher.next_published() == (0, 0)
