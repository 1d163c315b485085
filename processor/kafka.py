"""The aiokafka boundary: building clients from config, creating topics, translating errors.

Only this module and :mod:`processor.consumer` import aiokafka. The producer is
idempotent with ``acks=all``, so a retried send never duplicates or reorders outcomes
within a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from processor.config import KafkaConfig
from processor.errors import ProcessorError

ADMIN_TIMEOUT_S = 30.0
# Leaving the group can wait on a rebalance held up by a dead member (until its session
# expires): nothing is in flight by then, so we stop waiting and let the session expire.
STOP_TIMEOUT_S = 10.0

#: The client types, for modules that hold clients but must not import aiokafka.
Producer = AIOKafkaProducer
Consumer = AIOKafkaConsumer


class KafkaUnavailable(ProcessorError):
    """The broker could not be reached or refused a request (translated aiokafka error)."""


def make_producer(config: KafkaConfig, client_id_suffix: str = "") -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=config.bootstrap_servers,
        client_id=f"{config.client_id}{client_id_suffix}",
        acks="all",
        enable_idempotence=True,
        linger_ms=config.producer_linger_ms,
        max_batch_size=config.producer_max_batch_bytes,
        max_request_size=config.producer_max_request_bytes,
        compression_type=None if config.compression == "none" else config.compression,
        request_timeout_ms=config.request_timeout_ms,
    )


REBALANCE_MARGIN_MS = 10_000


def make_consumer(
    config: KafkaConfig, max_partition_fetch_bytes: int, drain_timeout_s: float
) -> AIOKafkaConsumer:
    """The group consumer. Its rebalance timeout covers a whole revoke drain: a member that
    is still draining when it runs out is evicted and its last commit is refused."""
    rebalance_timeout_ms = max(
        config.max_poll_interval_ms, int(drain_timeout_s * 1000) + REBALANCE_MARGIN_MS
    )
    return AIOKafkaConsumer(
        bootstrap_servers=config.bootstrap_servers,
        client_id=config.client_id,
        group_id=config.group_id,
        group_instance_id=config.group_instance_id,
        enable_auto_commit=False,
        auto_offset_reset=config.auto_offset_reset,
        session_timeout_ms=config.session_timeout_ms,
        heartbeat_interval_ms=config.heartbeat_interval_ms,
        max_poll_interval_ms=config.max_poll_interval_ms,
        rebalance_timeout_ms=rebalance_timeout_ms,
        request_timeout_ms=config.request_timeout_ms,
        max_partition_fetch_bytes=max_partition_fetch_bytes,
    )


async def start_clients(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer) -> None:
    """Start both clients (bootstrap, metadata).

    Raises:
        KafkaUnavailable: The broker could not be reached; nothing is left running.
    """
    try:
        await producer.start()
        await consumer.start()
    except (KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await producer.stop()
        raise KafkaUnavailable(f"cannot connect to Kafka: {exc!r}") from exc


async def broker_reachable(consumer: AIOKafkaConsumer, timeout_s: float) -> bool:
    """True when a real metadata request succeeds within ``timeout_s``."""
    try:
        await asyncio.wait_for(consumer.topics(), timeout_s)
    except (KafkaError, TimeoutError, OSError):
        return False
    return True


async def lag_by_partition(
    consumer: AIOKafkaConsumer, committed: dict[tuple[str, int], int | None]
) -> dict[tuple[str, int], int]:
    """High watermark minus our committed offset (or the fetch position), per partition."""
    lags = {}
    for (topic, partition), done in committed.items():
        tp = TopicPartition(topic, partition)
        high = consumer.highwater(tp)
        if high is None:
            continue
        if done is None:
            try:
                done = await consumer.position(tp)
            except (KafkaError, AssertionError):  # not assigned any more
                continue
        lags[(topic, partition)] = max(0, high - done)
    return lags


async def flush(producer: AIOKafkaProducer, timeout_s: float) -> bool:
    """Wait until every queued record is acknowledged or failed; False on timeout/error."""
    try:
        await asyncio.wait_for(producer.flush(), timeout_s)
    except (KafkaError, TimeoutError):
        return False
    return True


async def stop_clients(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer) -> None:
    """Leave the group and close both clients, each bounded by ``STOP_TIMEOUT_S``."""
    for client in (consumer, producer):
        with contextlib.suppress(KafkaError, TimeoutError, OSError):
            await asyncio.wait_for(client.stop(), STOP_TIMEOUT_S)


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


async def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], partitions: int, replication: int = 1
) -> None:
    """Create the topics that do not exist yet (idempotent).

    Raises:
        KafkaUnavailable: The broker could not be reached or refused.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), ADMIN_TIMEOUT_S)
        existing = set(await asyncio.wait_for(admin.list_topics(), ADMIN_TIMEOUT_S))
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if missing:
            new = [NewTopic(t, partitions, replication) for t in missing]
            with contextlib.suppress(TopicAlreadyExistsError):
                await asyncio.wait_for(admin.create_topics(new), ADMIN_TIMEOUT_S)
    except (KafkaError, TimeoutError, OSError) as exc:
        raise KafkaUnavailable(f"cannot create topics on {bootstrap_servers}: {exc!r}") from exc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)
