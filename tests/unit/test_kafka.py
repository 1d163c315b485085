"""The Kafka edge speaks tuples and the service's errors: aiokafka's types stay inside it."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata

from processor.errors import CommitFailed, KafkaUnavailable
from processor.inputs import Record
from processor.kafka import KafkaConsumer

RECORD = Record("in", 1, 0, 0, None, b"{}")


class FakeClient:
    """The few AIOKafkaConsumer calls the edge makes, recorded."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self.fail_commit = False
        self.paused: list[TopicPartition] = []
        self.resumed: list[TopicPartition] = []

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self.fail_commit:
            raise CommitFailedError("rebalance in progress")
        self.commits.append(offsets)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.extend(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.resumed.extend(tps)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("in", 0)}

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[Record]]:
        return {TopicPartition("in", 1): [RECORD]}

    #: What the broker says the end offsets are (None: it never answers).
    ends: dict[TopicPartition, int] | None = None
    highwaters: dict[TopicPartition, int] = {}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.ends is None:
            await asyncio.Event().wait()
        return {tp: self.ends[tp] for tp in partitions if self.ends and tp in self.ends}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)


def _consumer(client: FakeClient) -> KafkaConsumer:
    return KafkaConsumer(cast(AIOKafkaConsumer, client))


async def test_commit_takes_tuples_and_translates_a_refused_commit() -> None:
    """Offsets given by (topic, partition) reach aiokafka as its types; its refusal is ours."""
    client = FakeClient()
    consumer = _consumer(client)
    await consumer.commit({("in", 0): 7})
    assert client.commits == [{TopicPartition("in", 0): OffsetAndMetadata(7, "")}]
    client.fail_commit = True
    with pytest.raises(CommitFailed, match="CommitFailedError") as caught:
        await consumer.commit({("in", 0): 8})
    assert isinstance(caught.value, KafkaUnavailable)


async def test_poll_pause_and_resume_speak_tuples() -> None:
    """Batches come back keyed by tuples; resume skips partitions no longer assigned."""
    client = FakeClient()
    consumer = _consumer(client)
    assert await consumer.getmany(timeout_ms=1, max_records=1) == {("in", 1): [RECORD]}
    consumer.pause({("in", 0)})
    consumer.resume({("in", 0), ("in", 5)})
    assert client.paused == [TopicPartition("in", 0)]
    assert client.resumed == [TopicPartition("in", 0)]


async def test_lag_comes_from_the_brokers_end_offsets_not_the_fetchers_high_watermark() -> None:
    """The end offsets the broker gives win over the fetcher's (frozen while paused) high
    watermark; a broker that does not answer in time leaves the high watermark."""
    client = FakeClient()
    tp = TopicPartition("in", 0)
    client.highwaters = {tp: 50}
    client.ends = {tp: 190}
    consumer = _consumer(client)
    assert await consumer.lag({("in", 0): 40}, timeout_s=1) == {("in", 0): 150}
    client.ends = None
    assert await consumer.lag({("in", 0): 40}, timeout_s=0.01) == {("in", 0): 10}
