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
- :func:`ensure_topics`: create the input and outcome topics (tests, tools);
- :func:`create_or_find_topics`: ``processor topics create``: topics made as specified
  (partitions, replication factor, configs), or found and described.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
    errors,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata

from processor.config import KafkaConfig
from processor.errors import CommitFailed, KafkaUnavailable, RecordRejected
from processor.inputs import InputRecord

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
    """The group consumer, in the service's terms (tuples, ints, our errors).

    A commit waits at most ``commit_timeout_s``: while the broker is down aiokafka would wait
    for a coordinator for ever, and a commit that never returns holds up a shutdown.
    """

    def __init__(self, client: AIOKafkaConsumer, commit_timeout_s: float = 30.0) -> None:
        self._client = client
        self._commit_timeout_s = commit_timeout_s

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
            await asyncio.wait_for(self._client.commit(wanted), self._commit_timeout_s)
        except KafkaError as exc:
            raise CommitFailed(f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise CommitFailed(f"no answer within {self._commit_timeout_s:g}s") from exc

    async def reachable(self, timeout_s: float) -> bool:
        """True when a real metadata request succeeds within ``timeout_s``."""
        try:
            await asyncio.wait_for(self._client.topics(), timeout_s)
        except (KafkaError, TimeoutError, OSError):
            return False
        return True

    async def has_topic(self, topic: str, timeout_s: float) -> bool | None:
        """Whether the broker knows ``topic`` (None: it did not answer within ``timeout_s``)."""
        try:
            return topic in await asyncio.wait_for(self._client.topics(), timeout_s)
        except (KafkaError, TimeoutError, OSError):
            return None

    async def wait_for_topic(self, topic: str, interval_s: float, timeout_s: float) -> None:
        """Return once ``topic`` exists, with the subscription's metadata refreshed.

        aiokafka refreshes the metadata of a subscribed topic every ``metadata_max_age_ms``
        (5 minutes): a topic created after start-up would be picked up that late. Asking every
        ``interval_s`` and forcing the refresh once it exists makes it seconds.
        """
        while True:
            if await self.has_topic(topic, timeout_s):
                break
            await asyncio.sleep(interval_s)  # a poll of the broker, not a synchronisation
        # the consumer's own AIOKafkaClient: the public API offers no metadata refresh
        self._client._client.force_metadata_update()

    async def _end_offsets(
        self, partitions: list[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, int]:
        """The end offsets the broker gives now; the fetcher's high watermarks (as of the last
        fetch, frozen while a partition is paused) for partitions it did not answer for."""
        ends: dict[TopicPartition, int] = {}
        if partitions:
            with contextlib.suppress(KafkaError, TimeoutError, OSError, AssertionError):
                ends = await asyncio.wait_for(self._client.end_offsets(partitions), timeout_s)
        for tp in partitions:
            if tp not in ends and (high := self._client.highwater(tp)) is not None:
                ends[tp] = high
        return ends

    async def lag(
        self, committed: Mapping[TP, int | None], timeout_s: float = 2.0
    ) -> dict[TP, int]:
        """End offset minus our committed offset (or the fetch position), per partition.

        The end offsets are asked of the broker (within ``timeout_s``), so the lag is true
        while partitions are paused, when the fetcher learns nothing new.
        """
        lags = {}
        ends = await self._end_offsets([TopicPartition(*tp) for tp in committed], timeout_s)
        for (topic, partition), done in committed.items():
            tp = TopicPartition(topic, partition)
            high = ends.get(tp)
            if high is None:
                continue
            if done is None:
                try:
                    done = await self._client.position(tp)
                except (KafkaError, AssertionError):  # not assigned any more
                    continue
            lags[(topic, partition)] = max(0, high - done)
        return lags


def _make_producer(config: KafkaConfig) -> AIOKafkaProducer:
    return AIOKafkaProducer(
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
        self.consumer = KafkaConsumer(self._consumer, config.request_timeout_ms / 1000)

    async def start(self) -> None:
        """Start both clients (bootstrap, metadata), each within ``kafka.connect_timeout_s``.

        Raises:
            KafkaUnavailable: The broker could not be reached or did not answer in time (the
                message names the address); nothing is left running.
        """
        timeout_s = self._config.connect_timeout_s
        address = self._config.bootstrap_servers
        try:
            await asyncio.wait_for(self._producer.start(), timeout_s)
            await asyncio.wait_for(self._consumer.start(), timeout_s)
        except TimeoutError as exc:
            await self.stop(STOP_TIMEOUT_S)
            raise KafkaUnavailable(
                f"Kafka at {address} did not answer within {timeout_s:g}s "
                "(kafka.connect_timeout_s): is it a Kafka listener?"
            ) from exc
        except (KafkaError, OSError) as exc:
            await self.stop(STOP_TIMEOUT_S)
            raise KafkaUnavailable(f"cannot connect to Kafka at {address}: {exc!r}") from exc

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued record is acknowledged or failed; False on timeout/error."""
        try:
            await asyncio.wait_for(self._producer.flush(), timeout_s)
        except (KafkaError, TimeoutError):
            return False
        return True

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Leave the group and close both clients, within ``timeout_s`` in all.

        A client that does not close in time (the broker is down: leaving the group waits on
        a coordinator) is given up; its session expires on the broker's side.
        """
        deadline = asyncio.get_running_loop().time() + timeout_s
        for client in (self._consumer, self._producer):
            left = max(0.5, deadline - asyncio.get_running_loop().time())
            try:
                await asyncio.wait_for(client.stop(), left)
            except (KafkaError, TimeoutError, OSError):
                pass
            except asyncio.CancelledError:
                # aiokafka's fetcher cancels its pending fetches on close and then awaits
                # them: their CancelledError escapes consumer.stop(). Ours (a cancelled
                # caller) goes on.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise


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


@dataclass(frozen=True)
class TopicSpec:
    """A topic as ``processor topics create`` should make it (or find it)."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True)
class TopicFound:
    """A topic after ``processor topics create``: made now, or found with this layout."""

    spec: TopicSpec
    created: bool
    partitions: int
    replication_factor: int


def _layout(described: Mapping[str, Any]) -> tuple[int, int]:
    """Partitions and replication factor (the fewest replicas of any partition)."""
    partitions = described["partitions"]
    return len(partitions), min((len(p["replicas"]) for p in partitions), default=0)


def _refusals(topic_errors: Iterable[tuple[Any, ...]]) -> list[str]:
    """``topic: why`` for each topic the broker would not create ((topic, code[, message]))."""
    refused = []
    for topic, code, *rest in topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            refused.append(f"{topic}: {(rest and rest[0]) or errors.for_code(code).__name__}")
    return refused


async def create_or_find_topics(
    bootstrap_servers: str, specs: Sequence[TopicSpec], timeout_s: float = ADMIN_TIMEOUT_S
) -> list[TopicFound]:
    """Create the topics of ``specs`` that do not exist; describe them all.

    Raises:
        KafkaUnavailable: The broker could not be reached, did not answer within
            ``timeout_s``, or refused to create a topic (the message says which and why).
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        existing = set(await asyncio.wait_for(admin.list_topics(), timeout_s))
        new = [s for s in specs if s.name not in existing]
        if new:
            answer = await asyncio.wait_for(admin.create_topics([
                NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs))
                for s in new
            ]), timeout_s)  # fmt: skip
            if refused := _refusals(answer.topic_errors):
                raise KafkaUnavailable("cannot create topics: " + "; ".join(refused))
        names = [s.name for s in specs]
        described = await asyncio.wait_for(admin.describe_topics(names), timeout_s)
    except (KafkaError, TimeoutError, OSError) as exc:
        raise KafkaUnavailable(f"cannot create topics on {bootstrap_servers}: {exc!r}") from exc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)
    layouts = {d["topic"]: _layout(d) for d in described}
    created = {s.name for s in new}
    return [TopicFound(s, s.name in created, *layouts.get(s.name, (0, 0))) for s in specs]


async def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], partitions: int, replication: int = 1
) -> None:
    """Create the topics that do not exist yet (idempotent; tests and tools).

    Raises:
        KafkaUnavailable: The broker could not be reached or refused.
    """
    specs = [TopicSpec(t, partitions, replication, {}) for t in dict.fromkeys(topics)]
    await create_or_find_topics(bootstrap_servers, specs)
