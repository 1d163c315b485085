"""The benchmark's Kafka side: topics, the load it produces, and what it reads back.

- :func:`create_topics`: the input topic, and outcome topics stamped with the broker's
  append time (``LogAppendTime``), the clock every rate and latency is read from.
- :func:`produce_backlog`: the whole input written before the system under test starts, so
  the producer does not compete with it for the two cores.
- :func:`produce_paced`: an open-loop producer at a fixed rate, for the latency scenario.
- :class:`OutcomeCounter`: how many outcomes exist, from end offsets (cheap while polling);
  :class:`CommittedCounter`: how many inputs a group committed (exactly-once: transaction
  markers take offsets in the outcome topics, so their end offsets overcount).
- :func:`read_outcomes`: every outcome's append time and its input's produce time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from devtools.corpus import CorpusRecord

TIMEOUT_S = 30.0


async def create_topics(
    bootstrap: str, input_topic: str, outcome_topics: Sequence[str], partitions: int
) -> None:
    """Create the input topic and the outcome topics (append-time stamped)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), TIMEOUT_S)
    try:
        stamped = {"message.timestamp.type": "LogAppendTime"}
        topics = [NewTopic(input_topic, partitions, 1)] + [
            NewTopic(t, partitions, 1, topic_configs=stamped) for t in outcome_topics
        ]
        await asyncio.wait_for(admin.create_topics(topics), TIMEOUT_S)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)


def _fast_producer(bootstrap: str, linger_ms: int = 20) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=linger_ms,
                            max_batch_size=512 * 1024, request_timeout_ms=30_000)  # fmt: skip


async def produce_backlog(
    bootstrap: str, topic: str, corpus: Sequence[CorpusRecord], count: int
) -> float:
    """Write ``count`` records (cycling over ``corpus``); return the seconds it took."""
    producer = _fast_producer(bootstrap)
    started = time.monotonic()
    await producer.start()
    try:
        pending = []
        for i in range(count):
            r = corpus[i % len(corpus)]
            pending.append(await producer.send(topic, r.value, key=r.key, headers=list(r.headers)))
            if len(pending) >= 20_000:
                await asyncio.wait_for(asyncio.gather(*pending), TIMEOUT_S)
                pending.clear()
        await asyncio.wait_for(asyncio.gather(*pending), TIMEOUT_S)
    finally:
        await asyncio.wait_for(producer.stop(), TIMEOUT_S)
    return time.monotonic() - started


async def produce_paced(
    bootstrap: str, topic: str, corpus: Sequence[CorpusRecord], rate: float, seconds: float,
    offset: int = 0,
) -> int:  # fmt: skip
    """Produce at ``rate`` records/s for ``seconds`` (open loop, every 5 ms); return how many.

    Each record's timestamp is the moment it was handed to the producer. Records are taken
    from ``corpus`` starting at ``offset`` (so a second phase does not repeat the first).
    """
    producer = _fast_producer(bootstrap, linger_ms=1)
    await producer.start()
    sent = 0
    try:
        pending = []
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) - sent
            for _ in range(due):
                r = corpus[(offset + sent) % len(corpus)]
                pending.append(
                    await producer.send(topic, r.value, key=r.key, headers=list(r.headers))
                )
                sent += 1
            await asyncio.sleep(0.005)  # the pacing tick of an open-loop load
        await asyncio.wait_for(asyncio.gather(*pending), TIMEOUT_S)
    finally:
        await asyncio.wait_for(producer.stop(), TIMEOUT_S)
    return sent


class OutcomeCounter:
    """Counts the records in the outcome topics (sum of end offsets; topics start empty)."""

    def __init__(self, bootstrap: str, topics: Sequence[str], partitions: int) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self._tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]

    async def __aenter__(self) -> OutcomeCounter:
        await asyncio.wait_for(self._consumer.start(), TIMEOUT_S)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._consumer.stop(), 10)

    async def count(self) -> int:
        ends = await asyncio.wait_for(self._consumer.end_offsets(self._tps), TIMEOUT_S)
        return int(sum(ends.values()))


class CommittedCounter:
    """Counts the inputs a group has committed (sum of its committed offsets; the input topic
    starts empty): with exactly-once, the outcomes a read_committed reader can see."""

    def __init__(self, bootstrap: str, group: str, input_topic: str) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        self._group = group
        self._topic = input_topic

    async def __aenter__(self) -> CommittedCounter:
        await asyncio.wait_for(self._admin.start(), TIMEOUT_S)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._admin.close(), 10)

    async def count(self) -> int:
        try:
            offsets = await asyncio.wait_for(
                self._admin.list_consumer_group_offsets(self._group), TIMEOUT_S
            )
        except KafkaError:  # no group coordinator yet, early in a run
            return 0
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == self._topic)


async def stable_members(bootstrap: str, group: str) -> int:
    """How many members ``group`` has once it is Stable (every member holds its assignment);
    0 while it is still joining, rebalancing, or unknown."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), TIMEOUT_S)
    try:
        answers = await asyncio.wait_for(admin.describe_consumer_groups([group]), TIMEOUT_S)
    except KafkaError:
        return 0
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 10)
    for answer in answers:
        for described in answer.groups:  # (error, id, state, protocol type, protocol, members)
            if described[1] == group and described[2] == "Stable":
                return len(described[5])
    return 0


@dataclass(frozen=True, slots=True)
class OutcomeTimes:
    """Per outcome: when the broker appended it, and when its input was produced (s)."""

    appended_s: list[float]
    produced_s: list[float]


def _input_ts_ms(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    for name, raw in headers:
        if name == "bench.input.ts":  # passthrough's copy
            return int(raw)
    doc = json.loads(value or b"{}")  # the processor's outcome document
    return int(doc["input"]["timestamp_ms"])


async def read_outcomes(
    bootstrap: str, topics: Sequence[str], expected: int, with_inputs: bool, timeout_s: float = 120,
    isolation_level: str = "read_uncommitted",
) -> OutcomeTimes:  # fmt: skip
    """Read the outcome topics from the start until ``expected`` records (or the deadline).

    ``with_inputs`` also parses each outcome for its input's produce time (slower).
    """
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
        enable_auto_commit=False, fetch_max_bytes=16 * 1024 * 1024,
        isolation_level=isolation_level,
    )  # fmt: skip
    appended: list[float] = []
    produced: list[float] = []
    await asyncio.wait_for(consumer.start(), TIMEOUT_S)
    deadline = time.monotonic() + timeout_s
    try:
        while len(appended) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for msgs in batches.values():
                for msg in msgs:
                    appended.append(msg.timestamp / 1000.0)
                    if with_inputs:
                        produced.append(_input_ts_ms(msg.value, msg.headers) / 1000.0)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 10)
    return OutcomeTimes(appended, produced)
