"""The clients built from config: the producer and consumer settings every client shares, and
the producer as the publisher sees it (a refusal of one record is ``RecordRejected``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
)
from aiokafka.errors import (
    CorruptRecordException,
    IllegalOperation,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from processor.config import KafkaConfig
from processor.errors import PartitionFenced, RecordRejected
from processor.kafka.partitioner import KeyHashPartitioner
from processor.kafka.security import security_kwargs

ADMIN_TIMEOUT_S = 30.0


# Leaving the group can wait on a rebalance held up by a dead member (until its session
# expires): nothing is in flight by then, so we stop waiting and let the session expire.
STOP_TIMEOUT_S = 10.0


REBALANCE_MARGIN_MS = 10_000


TP = tuple[str, int]


def producer_kwargs(config: KafkaConfig) -> dict[str, Any]:
    """What every producer of the service is built from (outcomes, transactional, produce)."""
    return {
        **security_kwargs(config.security),
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": config.producer_linger_ms,
        "max_batch_size": config.producer_max_batch_bytes,
        "max_request_size": config.producer_max_request_bytes,
        "compression_type": None if config.compression == "none" else config.compression,
        "request_timeout_ms": config.request_timeout_ms,
        "partitioner": KeyHashPartitioner(),  # aiokafka's choice, each key hashed once
    }


def make_producer(config: KafkaConfig) -> AIOKafkaProducer:
    return AIOKafkaProducer(**producer_kwargs(config))


def make_consumer(
    config: KafkaConfig,
    max_partition_fetch_bytes: int,
    drain_timeout_s: float,
    isolation_level: str = "read_uncommitted",
) -> AIOKafkaConsumer:
    """The group consumer. Its rebalance timeout covers a whole revoke drain: a member that
    is still draining when it runs out is evicted and its last commit is refused."""
    rebalance_timeout_ms = max(
        config.max_poll_interval_ms, int(drain_timeout_s * 1000) + REBALANCE_MARGIN_MS
    )
    return AIOKafkaConsumer(
        **security_kwargs(config.security),
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
        isolation_level=isolation_level,
    )


#: Acknowledgement errors that refuse the record (or its batch), not the broker failing.
_RECORD_REFUSALS = (
    MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError,
    CorruptRecordException, InvalidTimestampError,
)  # fmt: skip


def is_record_refusal(exc: BaseException) -> bool:
    """True for an acknowledgement error about the record sent (too large for its topic,
    corrupt, a timestamp out of range), after the producer accepted it."""
    return isinstance(exc, _RECORD_REFUSALS)


def producer_fenced(client: AIOKafkaProducer) -> bool:
    """True once a newer producer with our transactional id fenced ``client`` (aiokafka
    records it only in its transaction manager: the one place we read a private attribute)."""
    manager = client._txn_manager
    if manager is None or not manager.is_fatal_error():
        return False
    ended = manager.wait_for_transaction_end()
    return bool(ended.done() and isinstance(ended.exception(), ProducerFenced))


class OutcomeProducer:
    """The producer as the publisher sees it: a refusal of one record (too large, neither key
    nor value, a header it cannot encode) is :class:`~processor.errors.RecordRejected`, not a
    client failure; anything else comes through as it is."""

    def __init__(self, client: AIOKafkaProducer) -> None:
        self._client = client

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        try:
            future: asyncio.Future[Any] = await self._client.send(
                topic, value=value, key=key, partition=partition,
                timestamp_ms=timestamp_ms, headers=headers,
            )  # fmt: skip
        except (MessageSizeTooLargeError, AssertionError, TypeError, ValueError) as exc:
            raise RecordRejected(f"{type(exc).__name__}: {exc}") from exc
        except IllegalOperation as exc:  # a transactional producer out of its transaction
            if producer_fenced(self._client):
                raise PartitionFenced(f"cannot send: {exc}") from exc
            raise
        return future
