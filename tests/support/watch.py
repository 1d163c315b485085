"""Watching the outcome topics while processors run: counts so far, arrival times, catch-up.

:class:`OutcomeWatch` runs an :class:`~devtools.reconcile.OutcomeCollector` in a
background task for as long as a test needs it, so the test can wait on progress ("2,000
more outcomes") while it kills, restarts or adds processors, and can afterwards ask when
the outcomes arrived. :meth:`OutcomeWatch.caught_up` waits until everything the outcome
topics hold has been read: once every processor has stopped, that is an exact end, with no
settle time to guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from devtools.reconcile import Coordinates, OutcomeCollector
from processor.config import KafkaConfig, TopicsConfig
from processor.kafka import topic_partitions
from tests.support.waiting import wait_until

WATCH_LIMIT_S = 600.0  # the collector's own deadline; every wait of a test is shorter
CLIENT_TIMEOUT_S = 30.0


async def outcome_records(bootstrap: str, topics: TopicsConfig) -> int:
    """How many records the three outcome topics hold now (the sum of their end offsets).

    The processor's idempotent, non-transactional producer leaves no gaps in the log, so
    the end offset of a partition of a fresh topic is its record count.
    """
    names = (topics.valid, topics.invalid, topics.dead_letter)
    known = await topic_partitions(KafkaConfig(bootstrap_servers=bootstrap), names)
    tps = [TopicPartition(name, p) for name in names for p in known.get(name, ())]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await asyncio.wait_for(consumer.start(), CLIENT_TIMEOUT_S)
    try:
        ends = await asyncio.wait_for(consumer.end_offsets(tps), CLIENT_TIMEOUT_S)
        return sum(ends.values())
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 10)


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), CLIENT_TIMEOUT_S)
    try:
        offsets = await asyncio.wait_for(admin.list_consumer_group_offsets(group), CLIENT_TIMEOUT_S)
    finally:
        await asyncio.wait_for(admin.close(), 10)
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def wait_committed(
    bootstrap: str,
    group: str,
    topic: str,
    coords: Iterable[Coordinates],
    timeout_s: float,
    give_up: Callable[[], bool] = lambda: False,
) -> None:
    """Wait until the group has committed every input in ``coords`` (checked each 0.2 s);
    fail early when ``give_up()`` (the processor died)."""
    ends: dict[int, int] = {}
    for partition, offset in coords:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    deadline = time.monotonic() + timeout_s
    committed: dict[int, int] = {}
    while True:
        with contextlib.suppress(KafkaError):  # a fresh broker has no group coordinator yet
            committed = await committed_offsets(bootstrap, group, topic)
        if all(committed.get(p, 0) >= end for p, end in ends.items()):
            return
        if give_up():
            raise AssertionError(f"gave up waiting for commits: {committed} of {ends}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"commits of {ends} did not happen within {timeout_s}s")
        await asyncio.sleep(0.2)  # the poll interval of a bounded wait


class OutcomeWatch:
    """Reads the outcome topics in the background; see :func:`watching`."""

    def __init__(self, bootstrap: str, topics: TopicsConfig, expected: set[Coordinates]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.expected = expected
        self.collector = OutcomeCollector(bootstrap, topics)
        #: ``(monotonic s, outcomes read so far)`` after every poll that brought some.
        self.arrivals: list[tuple[float, int]] = []
        self._stopping = False
        self._task: asyncio.Task[bool] | None = None

    @property
    def read(self) -> int:
        """Outcome records read so far, duplicates included."""
        return len(self.collector.in_order)

    @property
    def complete(self) -> bool:
        """Every expected input has at least one outcome."""
        return self.expected <= self.collector.seen.keys()

    def _note(self, _distinct: int) -> None:
        read = self.read
        if not self.arrivals or read > self.arrivals[-1][1]:
            self.arrivals.append((time.monotonic(), read))

    def _check_alive(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()  # raises what ended it
            raise AssertionError("the outcome watch ended early")

    async def wait_for(
        self,
        condition: Callable[[], bool],
        timeout_s: float,
        what: str,
        give_up: Callable[[], bool] = lambda: False,
    ) -> None:
        """Wait until ``condition()``; fail early when ``give_up()`` (a processor died)."""

        def done() -> bool:
            self._check_alive()
            if give_up():
                raise AssertionError(f"gave up waiting for {what}")
            return condition()

        await wait_until(done, timeout_s, what)

    async def wait_read(
        self, count: int, timeout_s: float, give_up: Callable[[], bool] = lambda: False
    ) -> None:
        """Wait until ``count`` outcome records (duplicates included) have been read."""
        await self.wait_for(lambda: self.read >= count, timeout_s, f"{count} outcomes", give_up)

    async def caught_up(self, timeout_s: float) -> None:
        """Wait until everything the outcome topics hold now has been read."""
        total = await outcome_records(self.bootstrap, self.topics)
        await self.wait_for(lambda: self.read >= total, timeout_s, f"reading {total} outcomes")

    def arrival_time(self, index: int) -> float:
        """When the outcome at ``index`` of ``collector.in_order`` was read (monotonic s)."""
        for at, read in self.arrivals:
            if read > index:
                return at
        raise IndexError(index)

    def longest_gap_s(self, start: float, end: float) -> float:
        """The longest time between two consecutive arrivals, the later in ``[start, end)``."""
        times = [at for at, _ in self.arrivals]
        gaps = [b - a for a, b in itertools.pairwise(times) if start <= b < end]
        return max(gaps, default=0.0)

    async def start(self) -> None:
        collecting = self.collector.collect(
            self.expected, timeout_s=WATCH_LIMIT_S, on_progress=self._note,
            settle_s=WATCH_LIMIT_S, give_up=lambda: self._stopping,
        )  # fmt: skip
        self._task = asyncio.create_task(collecting)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, CLIENT_TIMEOUT_S)


@contextlib.asynccontextmanager
async def watching(
    bootstrap: str, topics: TopicsConfig, expected: set[Coordinates]
) -> AsyncIterator[OutcomeWatch]:
    """An :class:`OutcomeWatch` reading from the start of the outcome topics until exit."""
    watch = OutcomeWatch(bootstrap, topics, expected)
    await watch.start()
    try:
        yield watch
    finally:
        await watch.stop()
