"""The aiokafka boundary: the clients built from config, topics, and every aiokafka error.

The only module of the service that imports aiokafka. The rest of the service sees
partitions as ``(topic, partition)`` tuples, offsets as ints, records as
:class:`~processor.inputs.InputRecord`, and errors from :mod:`processor.errors`:

- :class:`KafkaClients`: the idempotent producer (``acks=all``, so a retried send never
  duplicates or reorders outcomes within a partition) and the group consumer of one
  instance, started and stopped together;
- :class:`KafkaConsumer`: what the intake calls (poll, pause, resume, commit, rebalance
  callbacks) plus the broker probe and the lag the status poller asks for;
- :func:`produce_lines`: publish lines as records (``processor produce``);
- :func:`ensure_topics`: create the input and outcome topics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata

from processor.config import KafkaConfig, KafkaSecurity
from processor.errors import CommitFailed, KafkaUnavailable, RecordRejected
from processor.inputs import InputRecord
from processor.kafka_auth import (
    ClientCredentialsToken,
    FileToken,
    TokenSource,
    diagnose,
    ssl_context,
)

ADMIN_TIMEOUT_S = 30.0
# Leaving the group can wait on a rebalance held up by a dead member (until its session
# expires): nothing is in flight by then, so we stop waiting and let the session expire.
STOP_TIMEOUT_S = 10.0
REBALANCE_MARGIN_MS = 10_000

TP = tuple[str, int]


class RebalanceHandler(Protocol):
    """What is told about partitions assigned to and revoked from this member (the intake)."""

    def on_assigned(self, partitions: set[TP]) -> None: ...
    def on_revoked(self, partitions: set[TP]) -> Awaitable[None]: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's listener, translated to :class:`RebalanceHandler` with plain tuples."""

    def __init__(self, handler: RebalanceHandler) -> None:
        self._handler = handler

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._handler.on_revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._handler.on_assigned({(tp.topic, tp.partition) for tp in assigned})


class KafkaConsumer:
    """The group consumer, in the service's terms (tuples, ints, our errors)."""

    def __init__(self, client: AIOKafkaConsumer) -> None:
        self._client = client

    def subscribe(self, topic: str, handler: RebalanceHandler) -> None:
        self._client.subscribe([topic], listener=_Listener(handler))

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TP, Sequence[InputRecord]]:
        """The next records by partition (empty after ``timeout_ms`` when nothing came).

        Raises:
            KafkaUnavailable: aiokafka gave up on a fetch (unrecoverable for this member).
        """
        try:
            batches = await self._client.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot fetch records: {exc!r}") from exc
        return {(tp.topic, tp.partition): records for tp, records in batches.items()}

    def pause(self, partitions: Iterable[TP]) -> None:
        self._client.pause(*(TopicPartition(t, p) for t, p in partitions))

    def resume(self, partitions: Iterable[TP]) -> None:
        """Resume fetching the given partitions that are still assigned (others are ignored)."""
        assignment = self._client.assignment()
        live = (TopicPartition(t, p) for t, p in partitions)
        self._client.resume(*(tp for tp in live if tp in assignment))

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        """Commit the given offsets (each one past the last finished record).

        Raises:
            CommitFailed: The group is rebalancing, or the coordinator did not answer.
        """
        wanted = {TopicPartition(*tp): OffsetAndMetadata(o, "") for tp, o in offsets.items()}
        try:
            await self._client.commit(wanted)
        except KafkaError as exc:
            raise CommitFailed(f"{type(exc).__name__}: {exc}") from exc

    async def reachable(self, timeout_s: float) -> bool:
        """True when a real metadata request succeeds within ``timeout_s``."""
        try:
            await asyncio.wait_for(self._client.topics(), timeout_s)
        except (KafkaError, TimeoutError, OSError):
            return False
        return True

    async def lag(self, committed: Mapping[TP, int | None]) -> dict[TP, int]:
        """High watermark minus our committed offset (or the fetch position), per partition."""
        lags = {}
        for (topic, partition), done in committed.items():
            tp = TopicPartition(topic, partition)
            high = self._client.highwater(tp)
            if high is None:
                continue
            if done is None:
                try:
                    done = await self._client.position(tp)
                except (KafkaError, AssertionError):  # not assigned any more
                    continue
            lags[(topic, partition)] = max(0, high - done)
        return lags


class _TokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """aiokafka's OAUTHBEARER hook over one of our token sources."""

    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def token(self) -> str:
        return await self._source.token()


def security_kwargs(security: KafkaSecurity) -> dict[str, Any]:
    """The aiokafka client arguments for ``kafka.security`` (the same for every client).

    Raises:
        ConfigError: A certificate, key or secret file cannot be read.
    """
    kwargs: dict[str, Any] = {"security_protocol": security.protocol}
    if security.protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl_context(security.tls)
    sasl = security.sasl
    if sasl is None:
        return kwargs
    kwargs["sasl_mechanism"] = sasl.mechanism
    if sasl.token_file is not None:
        kwargs["sasl_oauth_token_provider"] = _TokenProvider(FileToken(sasl.token_file))
    elif sasl.client_credentials is not None:
        source = ClientCredentialsToken(sasl.client_credentials)
        kwargs["sasl_oauth_token_provider"] = _TokenProvider(source)
    else:
        assert sasl.password is not None
        kwargs["sasl_plain_username"] = sasl.username
        kwargs["sasl_plain_password"] = sasl.password.read().get_secret_value()
    return kwargs


def _make_producer(config: KafkaConfig) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **security_kwargs(config.security),
        bootstrap_servers=config.bootstrap_servers,
        client_id=config.client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=config.producer_linger_ms,
        max_batch_size=config.producer_max_batch_bytes,
        max_request_size=config.producer_max_request_bytes,
        compression_type=None if config.compression == "none" else config.compression,
        request_timeout_ms=config.request_timeout_ms,
    )


def _make_consumer(
    config: KafkaConfig, max_partition_fetch_bytes: int, drain_timeout_s: float
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
    )


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
        return future


class KafkaClients:
    """The producer and the group consumer of one instance, started and stopped together.

    ``producer`` satisfies :class:`processor.outcomes.Producer`; ``consumer`` is the
    :class:`KafkaConsumer` the intake and the status poller use.
    """

    def __init__(self, config: KafkaConfig, *, max_partition_fetch_bytes: int,
                 drain_timeout_s: float) -> None:  # fmt: skip
        self._config = config
        self._producer = _make_producer(config)
        self.producer = OutcomeProducer(self._producer)
        self._consumer = _make_consumer(config, max_partition_fetch_bytes, drain_timeout_s)
        self.consumer = KafkaConsumer(self._consumer)

    async def start(self) -> None:
        """Start both clients (bootstrap, metadata).

        Raises:
            KafkaUnavailable: The broker could not be reached; nothing is left running.
        """
        try:
            await self._producer.start()
            await self._consumer.start()
        except (KafkaError, OSError) as exc:
            with contextlib.suppress(Exception):
                await self.stop()
            security = self._config.security
            why = None if security.protocol == "PLAINTEXT" else await diagnose(
                security, self._config.bootstrap_servers
            )  # fmt: skip
            if why is not None:
                raise KafkaUnavailable(f"cannot connect to Kafka: {why}") from exc
            raise KafkaUnavailable(f"cannot connect to Kafka: {exc!r}") from exc

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued record is acknowledged or failed; False on timeout/error."""
        try:
            await asyncio.wait_for(self._producer.flush(), timeout_s)
        except (KafkaError, TimeoutError):
            return False
        return True

    async def stop(self) -> None:
        """Leave the group and close both clients, each bounded by ``STOP_TIMEOUT_S``."""
        for client in (self._consumer, self._producer):
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
    producer = _make_producer(config)
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
    bootstrap_servers: str,
    topics: Iterable[str],
    partitions: int,
    replication: int = 1,
    security: KafkaSecurity | None = None,
) -> None:
    """Create the topics that do not exist yet (idempotent).

    Raises:
        KafkaUnavailable: The broker could not be reached or refused.
    """
    admin = AIOKafkaAdminClient(
        **security_kwargs(security or KafkaSecurity()),
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=10_000,
    )
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
