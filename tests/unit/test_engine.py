"""Tests of the engine: lanes, bounds, acknowledgement-driven watermarks, drain and release."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, cast

import pytest

from processor.engine import TP, Engine
from processor.errors import PublishError
from processor.inputs import InputRecord, Record
from processor.outcomes import DeadLetter, Outcome, OutcomePublisher
from processor.pipeline import Pending, Pipeline
from schemas.outcomes import ReasonCode

TOPIC = "records.in"
P0: TP = (TOPIC, 0)
P1: TP = (TOPIC, 1)
WAIT_S = 2.0
Coord = tuple[int, int]  # (partition, offset)
Ordering = Literal["key", "partition", "unordered"]


def _coord(record: InputRecord) -> Coord:
    return (record.partition, record.offset)


def _record(partition: int, offset: int, key: bytes | None = None) -> Record:
    return Record(TOPIC, partition, offset, 1_700_000_000_000, key, b"{}")


class FakePipeline:
    """Returns a DeadLetter per record; records held with :meth:`hold` wait for :meth:`open`."""

    def __init__(self) -> None:
        self.started: asyncio.Queue[Coord] = asyncio.Queue()
        self.log: list[tuple[str, Coord]] = []
        self.cancelled: asyncio.Queue[Coord] = asyncio.Queue()
        self._gates: dict[Coord, asyncio.Event] = {}

    def hold(self, *coords: Coord) -> None:
        for coord in coords:
            self._gates[coord] = asyncio.Event()

    def open(self, coord: Coord) -> None:
        self._gates[coord].set()

    def front(self, record: InputRecord) -> Outcome | Pending:
        """A held record is pending (as if it had checks to run): it starts when its checks
        do (:meth:`finish`). Any other starts and is done now."""
        coord = _coord(record)
        if coord in self._gates:
            return Pending(record, cast(Any, None), cast(Any, None), 0.0, {}, None, (), None)
        self._start(coord)
        return self._done(coord)

    async def finish(self, pending: Pending) -> Outcome:
        coord = _coord(pending.record)
        self._start(coord)
        try:
            await self._gates[coord].wait()
        except asyncio.CancelledError:
            self.cancelled.put_nowait(coord)
            raise
        return self._done(coord)

    async def process(self, record: InputRecord) -> Outcome:
        front = self.front(record)
        return await self.finish(front) if isinstance(front, Pending) else front

    def _start(self, coord: Coord) -> None:
        self.log.append(("start", coord))
        self.started.put_nowait(coord)

    def _done(self, coord: Coord) -> Outcome:
        self.log.append(("end", coord))
        return DeadLetter(ReasonCode.DECODE_FAILED, "DecodeError", f"record {coord}")

    async def next_starts(self, n: int) -> set[Coord]:
        """The next ``n`` records to start, then check that nothing else started with them."""
        starts = {await asyncio.wait_for(self.started.get(), WAIT_S) for _ in range(n)}
        assert self.started.empty(), "more records started than expected"
        return starts


class FakePublisher:
    """Hands out one acknowledgement future per record, resolved by the test."""

    def __init__(self) -> None:
        self.published: asyncio.Queue[Coord] = asyncio.Queue()
        self.acks: dict[Coord, asyncio.Future[Any]] = {}

    async def publish_then(
        self, record: InputRecord, outcome: Outcome, on_ack: Callable[[asyncio.Future[Any]], None]
    ) -> None:
        (await self.publish(record, outcome)).add_done_callback(on_ack)

    async def publish(self, record: InputRecord, outcome: Outcome) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks[_coord(record)] = future
        self.published.put_nowait(_coord(record))
        return future

    async def next_published(self) -> Coord:
        return await asyncio.wait_for(self.published.get(), WAIT_S)


async def settle(future: asyncio.Future[Any], error: BaseException | None = None) -> None:
    """Resolve an ack future and wait until every callback registered before ours has run."""
    seen = asyncio.Event()
    future.add_done_callback(lambda _f: seen.set())
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
    await asyncio.wait_for(seen.wait(), WAIT_S)


class Rig:
    """An engine wired to a fake pipeline and publisher, recording finished outcomes."""

    def __init__(self, engine_factory: Callable[..., Engine], **options: Any) -> None:
        self.pipeline = FakePipeline()
        self.publisher = FakePublisher()
        self.finished: list[Outcome] = []
        self.engine = engine_factory(
            pipeline=cast(Pipeline, self.pipeline),
            publisher=cast(OutcomePublisher, self.publisher),
            on_outcome=lambda outcome, _took_s: self.finished.append(outcome),
            **options,
        )
        self.engine.assign([P0, P1])

    def submit(self, *records: Record) -> None:
        for record in records:
            self.engine.submit(record)

    async def ack(self, coord: Coord, error: BaseException | None = None) -> None:
        await settle(self.publisher.acks[coord], error)


MakeRig = Callable[..., Rig]


@pytest.fixture
async def make_rig() -> AsyncIterator[MakeRig]:
    """A factory of rigs whose engines' lanes are all cancelled after the test."""
    engines: list[Engine] = []

    def factory(**kwargs: Any) -> Engine:
        engine = Engine(**kwargs)
        engines.append(engine)
        return engine

    def make(
        ordering: Ordering = "key",
        max_concurrency: int = 16,
        max_in_flight: int = 100,
        max_in_flight_per_partition: int = 100,
        is_fenced: Callable[[BaseException], bool] = lambda _e: False,
    ) -> Rig:
        return Rig(
            factory,
            ordering=ordering,
            max_concurrency=max_concurrency,
            max_in_flight=max_in_flight,
            max_in_flight_per_partition=max_in_flight_per_partition,
            is_fenced=is_fenced,
        )

    yield make
    for engine in engines:
        await asyncio.wait_for(engine.cancel_all(), WAIT_S)


async def test_a_record_finishes_when_its_ack_resolves_not_when_published(
    make_rig: MakeRig,
) -> None:
    """A published but unacknowledged record holds the watermark; the ack releases it."""
    rig = make_rig()
    rig.submit(_record(0, 0))
    assert await rig.publisher.next_published() == (0, 0)
    state = rig.engine.offsets(P0)
    assert state is not None
    assert state.committable is None
    assert rig.engine.in_flight == 1
    assert rig.finished == []
    await rig.ack((0, 0))
    assert state.committable == 1
    assert state.in_flight == 0
    assert rig.engine.in_flight == 0
    assert rig.engine.finished_total == 1
    assert len(rig.finished) == 1


async def test_out_of_order_acks_advance_only_the_contiguous_watermark(make_rig: MakeRig) -> None:
    """An ack for offset 1 before offset 0 leaves the watermark until 0 is acked too."""
    rig = make_rig(ordering="unordered")
    rig.submit(_record(0, 0), _record(0, 1))
    for _ in range(2):
        await rig.publisher.next_published()
    state = rig.engine.offsets(P0)
    assert state is not None
    await rig.ack((0, 1))
    assert state.committable is None
    await rig.ack((0, 0))
    assert state.committable == 2


@pytest.mark.parametrize(
    ("ordering", "first", "later"),
    [
        ("key", {(0, 0), (0, 2), (0, 3), (1, 0)}, [((0, 0), (0, 1))]),
        ("partition", {(0, 0), (1, 0)}, [((0, 0), (0, 1)), ((0, 1), (0, 2)), ((0, 2), (0, 3))]),
        ("unordered", {(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)}, []),
    ],
)
async def test_lanes_overlap_what_the_ordering_allows_and_serialize_the_rest(
    make_rig: MakeRig,
    ordering: Ordering,
    first: set[Coord],
    later: list[tuple[Coord, Coord]],
) -> None:
    """Each ordering runs its lanes in parallel and a lane's next record only after the last."""
    rig = make_rig(ordering=ordering)
    records = [
        _record(0, 0, b"A"),
        _record(0, 1, b"A"),
        _record(0, 2, b"B"),
        _record(0, 3, None),
        _record(1, 0, b"A"),
    ]
    rig.pipeline.hold(*(_coord(r) for r in records))
    rig.submit(*records)
    assert await rig.pipeline.next_starts(len(first)) == first
    for done, successor in later:
        rig.pipeline.open(done)
        assert await rig.pipeline.next_starts(1) == {successor}
    for record in records:
        rig.pipeline.open(_coord(record))
    for _ in records:
        await rig.publisher.next_published()
    assert {c for kind, c in rig.pipeline.log if kind == "end"} == {_coord(r) for r in records}


async def test_same_key_records_run_strictly_one_after_another(make_rig: MakeRig) -> None:
    """Within one key lane each record ends before the next starts, in offset order."""
    rig = make_rig(ordering="key")
    records = [_record(0, offset, b"same") for offset in range(4)]
    rig.pipeline.hold(*(_coord(r) for r in records))
    rig.submit(*records)
    for record in records:
        assert await rig.pipeline.next_starts(1) == {_coord(record)}
        rig.pipeline.open(_coord(record))
    for _ in records:
        await rig.publisher.next_published()
    assert rig.pipeline.log == [
        (kind, (0, offset)) for offset in range(4) for kind in ("start", "end")
    ]


async def test_max_concurrency_bounds_the_records_in_the_pipeline(make_rig: MakeRig) -> None:
    """With max_concurrency=2 a third record starts only when one of the first two is done."""
    rig = make_rig(ordering="unordered", max_concurrency=2)
    records = [_record(0, offset) for offset in range(3)]
    rig.pipeline.hold(*(_coord(r) for r in records))
    rig.submit(*records)
    assert await rig.pipeline.next_starts(2) == {(0, 0), (0, 1)}
    rig.pipeline.open((0, 1))
    assert await rig.pipeline.next_starts(1) == {(0, 2)}


async def test_capacity_and_partitions_over_cap_follow_the_caps(make_rig: MakeRig) -> None:
    """Taken, unacknowledged records count against the global and per-partition caps."""
    rig = make_rig(ordering="unordered", max_in_flight=3, max_in_flight_per_partition=2)
    engine = rig.engine
    assert engine.capacity() == 3
    assert engine.partitions_over_cap() == set()
    rig.submit(_record(0, 0), _record(0, 1))
    assert engine.capacity() == 1
    assert engine.partitions_over_cap() == {P0}
    assert engine.in_flight_of([P0]) == 2
    rig.submit(_record(1, 0))
    assert engine.capacity() == 0
    assert engine.partitions_over_cap() == {P0}
    for _ in range(3):
        await rig.publisher.next_published()
    await rig.ack((0, 0))
    assert engine.capacity() == 1
    assert engine.partitions_over_cap() == set()
    await rig.ack((0, 1))
    await rig.ack((1, 0))
    assert engine.capacity() == 3
    assert engine.in_flight == 0


@pytest.mark.parametrize("failure", ["exception", "cancelled"])
async def test_a_failed_ack_is_fatal_and_does_not_advance_the_watermark(
    make_rig: MakeRig, failure: str
) -> None:
    """An ack that fails or is cancelled sets engine.fatal and leaves the record unfinished."""
    rig = make_rig()
    rig.submit(_record(0, 0))
    await rig.publisher.next_published()
    future = rig.publisher.acks[(0, 0)]
    if failure == "exception":
        await settle(future, RuntimeError("broker said no"))
    else:
        seen = asyncio.Event()
        future.add_done_callback(lambda _f: seen.set())
        future.cancel()
        await asyncio.wait_for(seen.wait(), WAIT_S)
    assert isinstance(rig.engine.fatal, PublishError)
    state = rig.engine.offsets(P0)
    assert state is not None
    assert state.committable is None
    assert state.in_flight == 1
    assert rig.finished == []
    assert await rig.engine.drain(None, WAIT_S) is False


async def test_drain_returns_true_once_everything_is_acked(make_rig: MakeRig) -> None:
    """drain() waits for the last ack and then reports success."""
    rig = make_rig()
    rig.submit(_record(0, 0), _record(1, 0))
    drained = asyncio.create_task(rig.engine.drain(None, WAIT_S))
    await rig.publisher.next_published()
    await rig.publisher.next_published()
    await rig.ack((0, 0))
    assert not drained.done()
    await rig.ack((1, 0))
    assert await asyncio.wait_for(drained, WAIT_S) is True


async def test_drain_returns_false_when_the_deadline_passes(make_rig: MakeRig) -> None:
    """drain() gives up after its timeout when a record is never acknowledged."""
    rig = make_rig()
    rig.submit(_record(0, 0))
    await rig.publisher.next_published()
    assert await asyncio.wait_for(rig.engine.drain(None, 0.05), WAIT_S) is False
    assert rig.engine.in_flight == 1


async def test_drain_of_some_partitions_ignores_the_others(make_rig: MakeRig) -> None:
    """Draining an idle partition succeeds even while another still has work in flight."""
    rig = make_rig()
    rig.submit(_record(0, 0))
    await rig.publisher.next_published()
    assert await asyncio.wait_for(rig.engine.drain([P1], 0.05), WAIT_S) is True


async def test_release_cancels_the_lanes_of_the_released_partition_only(
    make_rig: MakeRig,
) -> None:
    """Releasing a partition cancels its running lanes and forgets it; others carry on."""
    rig = make_rig()
    rig.pipeline.hold((0, 0), (1, 0))
    rig.submit(_record(0, 0, b"A"), _record(1, 0, b"A"))
    assert await rig.pipeline.next_starts(2) == {(0, 0), (1, 0)}
    rig.engine.release([P0])
    assert await asyncio.wait_for(rig.pipeline.cancelled.get(), WAIT_S) == (0, 0)
    assert rig.pipeline.cancelled.empty()
    assert rig.engine.offsets(P0) is None
    assert rig.engine.assigned == [P1]
    assert rig.engine.in_flight == 1
    rig.pipeline.open((1, 0))
    assert await rig.publisher.next_published() == (1, 0)
    await rig.ack((1, 0))
    state = rig.engine.offsets(P1)
    assert state is not None
    assert state.committable == 1


async def test_a_late_ack_for_a_released_partition_is_ignored(make_rig: MakeRig) -> None:
    """An ack arriving after its partition was released changes no count and no watermark."""
    rig = make_rig()
    rig.submit(_record(0, 0), _record(1, 0))
    await rig.publisher.next_published()
    await rig.publisher.next_published()
    rig.engine.release([P0])
    assert rig.engine.in_flight == 1
    await rig.ack((0, 0))
    assert rig.engine.in_flight == 1
    assert rig.engine.finished_total == 0
    assert rig.finished == []
    assert rig.engine.fatal is None


async def test_a_late_ack_from_before_a_reassignment_is_ignored(make_rig: MakeRig) -> None:
    """After release and re-assign, an ack from the earlier assignment does not count."""
    rig = make_rig(ordering="unordered")
    old = [_record(0, 0), _record(0, 1)]
    rig.submit(*old)
    await rig.publisher.next_published()
    await rig.publisher.next_published()
    old_acks = dict(rig.publisher.acks)
    rig.engine.release([P0])
    rig.engine.assign([P0])
    rig.submit(_record(0, 0), _record(0, 1))  # the new assignment redoes the same offsets
    await rig.publisher.next_published()
    await rig.publisher.next_published()
    await settle(old_acks[(0, 1)])
    state = rig.engine.offsets(P0)
    assert state is not None
    assert state.in_flight == 2
    assert rig.engine.in_flight == 2
    await rig.ack((0, 0))
    assert state.committable == 1


async def test_a_released_partition_can_be_assigned_again_and_runs_afresh(
    make_rig: MakeRig,
) -> None:
    """After a release cancelled its lane, re-assigning the partition processes records again."""
    rig = make_rig()
    rig.pipeline.hold((0, 0))
    rig.submit(_record(0, 0, b"A"))
    await rig.pipeline.next_starts(1)
    rig.engine.release([P0])
    await asyncio.wait_for(rig.pipeline.cancelled.get(), WAIT_S)
    rig.engine.assign([P0])
    rig.submit(_record(0, 1, b"A"))
    assert await rig.pipeline.next_starts(1) == {(0, 1)}
    assert await rig.publisher.next_published() == (0, 1)
    await rig.ack((0, 1))
    state = rig.engine.offsets(P0)
    assert state is not None
    assert state.committable == 2


async def test_a_hold_lets_records_below_the_cut_finish_and_starts_later_ones_after_it(
    make_rig: MakeRig,
) -> None:
    """Held at its next offset, a partition finishes the records taken before the cut while
    records taken after it do not start until the hold ends."""
    rig = make_rig()
    rig.submit(_record(0, 0, b"a"), _record(0, 1, b"b"))
    assert await rig.pipeline.next_starts(2) == {(0, 0), (0, 1)}
    cut = rig.engine.hold(P0)
    assert cut == 2
    rig.submit(_record(0, 2, b"c"), _record(0, 3, b"a"), _record(1, 0, b"a"))
    assert await rig.pipeline.next_starts(1) == {(1, 0)}  # other partitions are not held
    for offset in (0, 1):
        await rig.publisher.next_published()
        await rig.ack((0, offset))
    assert await rig.engine.settle(P0, cut, WAIT_S)
    assert rig.pipeline.started.empty()
    rig.engine.unhold(P0)
    assert await rig.pipeline.next_starts(2) == {(0, 2), (0, 3)}


async def test_settle_returns_false_while_a_record_below_the_cut_is_unfinished(
    make_rig: MakeRig,
) -> None:
    """A record below the cut that is not acknowledged keeps settle from succeeding."""
    rig = make_rig()
    rig.submit(_record(0, 0, b"a"), _record(0, 1, b"b"))
    cut = rig.engine.hold(P0)
    assert cut == 2
    await rig.publisher.next_published()
    await rig.publisher.next_published()
    await rig.ack((0, 1))
    assert not await rig.engine.settle(P0, cut, 0.05)
    rig.engine.unhold(P0)


async def test_hold_has_no_cut_when_nothing_was_taken_since_the_last_commit(
    make_rig: MakeRig,
) -> None:
    """A partition whose last commit covers everything taken has nothing to cut."""
    rig = make_rig()
    assert rig.engine.hold(P0) is None
    rig.submit(_record(0, 0))
    await rig.publisher.next_published()
    await rig.ack((0, 0))
    rig.engine.mark_committed({P0: 1})
    assert rig.engine.hold(P0) is None


async def test_a_fenced_acknowledgement_loses_the_partition_not_the_process(
    make_rig: MakeRig,
) -> None:
    """An ack failing with an error the engine is told means fencing drops its partition
    (no longer owned, nothing finished) and leaves the process and other partitions be."""

    class Fenced(Exception):
        pass

    rig = make_rig(is_fenced=lambda exc: isinstance(exc, Fenced))
    rig.submit(_record(0, 0), _record(1, 0))
    await rig.publisher.next_published()
    await rig.publisher.next_published()
    await rig.ack((0, 0), Fenced("fenced"))
    assert rig.engine.fatal is None
    assert not rig.engine.owns(P0)
    await rig.ack((1, 0))
    assert rig.engine.committable() == {P1: 1}
