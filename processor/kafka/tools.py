"""Kafka for the commands beside ``run``: ``processor produce`` (lines as records) and
``processor dlq redrive`` (one pass over a topic, sends acknowledged before progress is committed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    TopicPartition,
)
from aiokafka.errors import (
    KafkaError,
)
from aiokafka.structs import OffsetAndMetadata

from processor.config import KafkaConfig
from processor.errors import CommitFailed, KafkaUnavailable
from processor.inputs import InputRecord
from processor.kafka.admin import topic_partitions
from processor.kafka.factory import STOP_TIMEOUT_S, TP, OutcomeProducer, make_producer
from processor.kafka.security import security_kwargs

#: Sends awaited at once by :func:`produce_lines` (bounds the memory of a long input).
PRODUCE_WINDOW = 10_000


async def produce_lines(
    config: KafkaConfig,
    topic: str,
    lines: AsyncIterable[bytes],
    key_for: Callable[[bytes], bytes | None],
) -> int:
    """Publish each line as one record's value, as it is, with an idempotent acks=all producer.

    Args:
        config: How to reach Kafka (the producer settings of the processor).
        topic: Where to publish.
        lines: The record values.
        key_for: The key of a record, from its value (None: no key).

    Returns:
        How many records the broker acknowledged (all of them).

    Raises:
        KafkaUnavailable: The broker could not be reached or did not acknowledge a record
            within ``kafka.request_timeout_ms`` (sending) or ``kafka.flush_timeout_s`` (acks).
    """
    producer = make_producer(config)
    send_timeout_s = config.request_timeout_ms / 1000
    acknowledged = 0

    async def acknowledge(pending: list[asyncio.Future[object]]) -> int:
        await asyncio.wait_for(asyncio.gather(*pending), config.flush_timeout_s)
        return len(pending)

    try:
        await asyncio.wait_for(producer.start(), send_timeout_s)
        pending: list[asyncio.Future[object]] = []
        async for line in lines:
            sent = producer.send(topic, line, key=key_for(line))
            pending.append(await asyncio.wait_for(sent, send_timeout_s))
            if len(pending) >= PRODUCE_WINDOW:
                acknowledged += await acknowledge(pending)
                pending = []
        acknowledged += await acknowledge(pending)
    except (KafkaError, TimeoutError, OSError) as exc:
        raise KafkaUnavailable(
            f"cannot produce to {topic} on {config.bootstrap_servers} "
            f"({acknowledged} records acknowledged): {exc!r}"
        ) from exc
    finally:
        with contextlib.suppress(KafkaError, TimeoutError, OSError):
            await asyncio.wait_for(producer.stop(), STOP_TIMEOUT_S)
    return acknowledged


class TopicReader:
    """One pass over a whole topic for a tool (``processor dlq redrive``): every partition
    assigned by hand, read from the ``group``'s committed offsets (or the beginning) up to
    the end offsets taken when it opened, so records written during the pass wait for the
    next one. Progress is committed only when the caller says so."""

    def __init__(self, client: AIOKafkaConsumer, ends: dict[TP, int]) -> None:
        self._client = client
        self._ends = ends
        self.partitions = sorted(ends)

    @classmethod
    async def open(
        cls,
        config: KafkaConfig,
        topic: str,
        group: str,
        partitions: Iterable[int] | None = None,
        require: Iterable[str] = (),
    ) -> TopicReader:
        """Assign ``topic``'s partitions (or only ``partitions``) and take their end offsets.

        Raises:
            KafkaUnavailable: The broker could not be reached, or ``topic`` or a topic of
                ``require`` does not exist.
        """
        client = AIOKafkaConsumer(
            **security_kwargs(config.security),
            bootstrap_servers=config.bootstrap_servers, client_id=config.client_id,
            group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
            request_timeout_ms=config.request_timeout_ms,
        )  # fmt: skip
        timeout_s = config.request_timeout_ms / 1000
        try:
            await asyncio.wait_for(client.start(), timeout_s)
            known = await topic_partitions(config, [topic, *require])
            for name in (topic, *require):
                if name not in known:
                    raise KafkaUnavailable(
                        f"topic {name} does not exist on {config.bootstrap_servers}"
                    )
            found = known[topic]
            wanted = set(found) if partitions is None else set(found) & set(partitions)
            tps = [TopicPartition(topic, p) for p in sorted(wanted)]
            client.assign(tps)
            ends = await asyncio.wait_for(client.end_offsets(tps), timeout_s)
        except (KafkaError, TimeoutError, OSError) as exc:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.stop(), STOP_TIMEOUT_S)
            raise KafkaUnavailable(
                f"cannot read {topic} on {config.bootstrap_servers}: {exc!r}"
            ) from exc
        except KafkaUnavailable:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.stop(), STOP_TIMEOUT_S)
            raise
        return cls(client, {(tp.topic, tp.partition): ends[tp] for tp in tps})

    async def seek(self, offset: int) -> None:
        """Start every partition at ``offset`` at least (``--start-offset``)."""
        for topic, partition in self.partitions:
            tp = TopicPartition(topic, partition)
            if await self._client.position(tp) < offset:
                self._client.seek(tp, offset)

    async def remaining(self) -> int:
        """Records between the current positions and the end offsets."""
        total = 0
        for tp, end in self._ends.items():
            total += max(0, end - await self._client.position(TopicPartition(*tp)))
        return total

    async def batches(self, max_records: int, timeout_s: float) -> AsyncIterable[list[InputRecord]]:
        """The records up to the end offsets, in batches (per partition in offset order).

        Raises:
            KafkaUnavailable: A fetch failed, or nothing came for ``timeout_s`` while records
                were still expected.
        """
        waiting = {tp for tp, end in self._ends.items() if end > 0}
        for tp in list(waiting):  # a partition already read to its end has nothing for us
            if await self._client.position(TopicPartition(*tp)) >= self._ends[tp]:
                waiting.discard(tp)
        idle_since = asyncio.get_running_loop().time()
        while waiting:
            try:
                got = await self._client.getmany(
                    *(TopicPartition(*tp) for tp in waiting), timeout_ms=500,
                    max_records=max_records,
                )  # fmt: skip
            except KafkaError as exc:
                raise KafkaUnavailable(f"cannot fetch records: {exc!r}") from exc
            batch: list[InputRecord] = []
            for tp, records in got.items():
                end = self._ends[(tp.topic, tp.partition)]
                batch.extend(r for r in records if r.offset < end)
                if records and records[-1].offset + 1 >= end:
                    waiting.discard((tp.topic, tp.partition))
            now = asyncio.get_running_loop().time()
            if batch:
                idle_since = now
                yield batch
            elif now - idle_since > timeout_s:
                raise KafkaUnavailable(f"no records came for {timeout_s:.0f}s from {waiting}")

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        """Commit the group's progress (each offset one past the last record handled).

        Raises:
            CommitFailed: The coordinator refused or did not answer.
        """
        wanted = {TopicPartition(*tp): OffsetAndMetadata(o, "") for tp, o in offsets.items()}
        try:
            await self._client.commit(wanted)
        except KafkaError as exc:
            raise CommitFailed(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        with contextlib.suppress(KafkaError, TimeoutError, OSError):
            await asyncio.wait_for(self._client.stop(), STOP_TIMEOUT_S)


class RecordSender:
    """An idempotent ``acks=all`` producer for a tool: send, then wait for the broker."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._client = make_producer(config)
        self.producer = OutcomeProducer(self._client)

    async def start(self) -> None:
        """Raises: KafkaUnavailable: the broker could not be reached."""
        try:
            await asyncio.wait_for(self._client.start(), self._config.request_timeout_ms / 1000)
        except (KafkaError, TimeoutError, OSError) as exc:
            await self.stop()
            raise KafkaUnavailable(
                f"cannot connect to Kafka at {self._config.bootstrap_servers}: {exc!r}"
            ) from exc

    async def acknowledged(self, pending: Sequence[asyncio.Future[Any]]) -> None:
        """Wait until the broker acknowledged every one of ``pending``.

        Raises:
            KafkaUnavailable: One was refused, or not acknowledged in ``kafka.flush_timeout_s``.
        """
        try:
            await asyncio.wait_for(asyncio.gather(*pending), self._config.flush_timeout_s)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailable(f"a record was not acknowledged: {exc!r}") from exc

    async def publish(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
        timeout_s: float,
    ) -> list[tuple[int, int]]:  # fmt: skip
        """Send ``(key, value, headers)`` records and wait for every acknowledgement.

        Returns:
            Each record's ``(partition, offset)``, in order.

        Raises:
            RecordRejected: The producer refused a record as it is (too large).
            KafkaUnavailable: Not all acknowledged within ``timeout_s`` (some may be written).
        """
        try:
            async with asyncio.timeout(timeout_s):
                pending = [
                    await self.producer.send(topic, value=value, key=key, headers=headers)
                    for key, value, headers in records
                ]
                written = await asyncio.gather(*pending)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailable(f"records not acknowledged: {type(exc).__name__}") from exc
        return [(int(meta.partition), int(meta.offset)) for meta in written]

    async def stop(self) -> None:
        with contextlib.suppress(KafkaError, TimeoutError, OSError):
            await asyncio.wait_for(self._client.stop(), STOP_TIMEOUT_S)
