"""The aiokafka boundary: the clients built from config, topics, and every aiokafka error.

The only module of the service that imports aiokafka. The rest of the service sees
partitions as ``(topic, partition)`` tuples, offsets as ints, records as
:class:`~processor.inputs.InputRecord`, and errors from :mod:`processor.errors`:

- :class:`KafkaClients`: the idempotent producer (``acks=all``, so a retried send never
  duplicates or reorders outcomes within a partition) and the group consumer of one
  instance, started and stopped together;
- :class:`KafkaConsumer`: what the intake calls (poll, pause, resume, commit, rebalance
  callbacks) plus the broker probe and the lag the status poller asks for;
- :class:`TransactionalProducers` (``delivery: exactly_once``): one transactional producer per
  assigned input partition, which commits that partition's outcomes with its input offsets;
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
from aiokafka.errors import (
    CorruptRecordException,
    IllegalOperation,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)
from aiokafka.structs import OffsetAndMetadata

from processor.config import KafkaConfig
from processor.errors import CommitFailed, KafkaUnavailable, PartitionFenced, RecordRejected
from processor.inputs import InputRecord

ADMIN_TIMEOUT_S = 30.0
# Leaving the group can wait on a rebalance held up by a dead member (until its session
# expires): nothing is in flight by then, so we stop waiting and let the session expire.
STOP_TIMEOUT_S = 10.0
REBALANCE_MARGIN_MS = 10_000

TP = tuple[str, int]


class RebalanceHandler(Protocol):
    """What is told about partitions assigned to and revoked from this member (the intake)."""

    def on_assigned(self, partitions: set[TP]) -> Awaitable[None]: ...
    def on_revoked(self, partitions: set[TP]) -> Awaitable[None]: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's listener, translated to :class:`RebalanceHandler` with plain tuples."""

    def __init__(self, handler: RebalanceHandler) -> None:
        self._handler = handler

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._handler.on_revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._handler.on_assigned({(tp.topic, tp.partition) for tp in assigned})


class KafkaConsumer:
    """The group consumer, in the service's terms (tuples, ints, our errors).

    A commit waits at most ``commit_timeout_s``: while the broker is down aiokafka would wait
    for a coordinator for ever, and a commit that never returns holds up a shutdown.
    """

    def __init__(
        self,
        client: AIOKafkaConsumer,
        commit_timeout_s: float = 30.0,
        auto_offset_reset: str = "earliest",
    ) -> None:
        self._client = client
        self._commit_timeout_s = commit_timeout_s
        self._reset = auto_offset_reset

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

    async def rewind(self, partitions: Iterable[TP]) -> None:
        """Fetch the committed offsets of ``partitions`` afresh and seek to them (or, with none,
        to where ``auto_offset_reset`` says). Exactly-once: after our producers fenced the
        previous owner, whose last transaction may have moved its offsets after the assignment
        read them, and whatever a poll returned meanwhile (not taken: not ready) is read again.

        Raises:
            KafkaUnavailable: The group coordinator did not answer.
        """
        try:
            for topic, partition in partitions:
                tp = TopicPartition(topic, partition)
                committed = await self._client.committed(tp)
                if committed is not None:
                    self._client.seek(tp, committed)
                elif self._reset == "earliest":
                    await self._client.seek_to_beginning(tp)
                else:
                    await self._client.seek_to_end(tp)
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot fetch committed offsets: {exc!r}") from exc

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


def _producer_kwargs(config: KafkaConfig) -> dict[str, Any]:
    """What every producer of the service is built from (outcomes, transactional, produce)."""
    return {
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": config.producer_linger_ms,
        "max_batch_size": config.producer_max_batch_bytes,
        "max_request_size": config.producer_max_request_bytes,
        "compression_type": None if config.compression == "none" else config.compression,
        "request_timeout_ms": config.request_timeout_ms,
    }


def _make_producer(config: KafkaConfig) -> AIOKafkaProducer:
    return AIOKafkaProducer(**_producer_kwargs(config))


def _make_consumer(
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
            if _fenced(self._client):
                raise PartitionFenced(f"cannot send: {exc}") from exc
            raise
        return future


def _fenced(client: AIOKafkaProducer) -> bool:
    """True once a newer producer with our transactional id fenced ``client`` (aiokafka
    records it only in its transaction manager: the one place we read a private attribute)."""
    manager = client._txn_manager
    if manager is None or not manager.is_fatal_error():
        return False
    ended = manager.wait_for_transaction_end()
    return bool(ended.done() and isinstance(ended.exception(), ProducerFenced))


#: Acknowledgement errors that refuse the record (or its batch), not the broker failing.
_RECORD_REFUSALS = (
    MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError,
    CorruptRecordException, InvalidTimestampError,
)  # fmt: skip


async def message_size_limits(config: KafkaConfig, topics: Sequence[str]) -> dict[str, int]:
    """Each existing topic's ``max.message.bytes`` (its own or the broker's default); the
    topics the broker would not describe are left out.

    Raises:
        KafkaUnavailable: The broker could not be reached.
    """
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(
        bootstrap_servers=config.bootstrap_servers, request_timeout_ms=config.request_timeout_ms
    )
    wanted = [
        ConfigResource(ConfigResourceType.TOPIC, t, {"max.message.bytes": None}) for t in topics
    ]
    limits: dict[str, int] = {}
    try:
        await asyncio.wait_for(admin.start(), ADMIN_TIMEOUT_S)
        for response in await asyncio.wait_for(admin.describe_configs(wanted), ADMIN_TIMEOUT_S):
            for resource in response.to_object()["resources"]:
                for entry in resource["config_entries"] if resource["error_code"] == 0 else ():
                    if entry["config_names"] == "max.message.bytes":
                        limits[resource["resource_name"]] = int(entry["config_value"])
    except (KafkaError, TimeoutError, OSError) as exc:
        raise KafkaUnavailable(
            f"cannot describe topics on {config.bootstrap_servers}: {exc!r}"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)
    return limits


def is_record_refusal(exc: BaseException) -> bool:
    """True for an acknowledgement error about the record sent (too large for its topic,
    corrupt, a timestamp out of range), after the producer accepted it."""
    return isinstance(exc, _RECORD_REFUSALS)


def is_fenced(exc: BaseException) -> bool:
    """True for a publish or commit error that means our transactional producer was fenced."""
    return isinstance(exc, ProducerFenced | PartitionFenced)


class TransactionalProducers:
    """``delivery: exactly_once``: one transactional producer per assigned input partition.

    The producer of input partition ``(topic, p)`` has the transactional id
    ``<prefix>-<topic>-<p>`` (:meth:`~processor.config.KafkaConfig.transactional_id`). Its
    start (InitProducerId) fences whichever producer had that id before, the partition's
    previous owner, and aborts that one's open transaction: a zombie that still believes it
    owns the partition gets ``ProducerFenced`` on its next commit. This is how Kafka Streams
    fenced before KIP-447; aiokafka's transactional offset commit carries no group metadata,
    so the group generation cannot fence. Every producer is built from the same base
    settings as the outcome producer (:func:`_producer_kwargs`).
    """

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._timeout_s = config.request_timeout_ms / 1000
        self._clients: dict[TP, AIOKafkaProducer] = {}
        self._producers: dict[TP, OutcomeProducer] = {}

    async def open(self, partitions: Iterable[TP]) -> None:
        """Start (and so fence the previous owner's producer of) each partition, and begin
        its first transaction.

        Raises:
            KafkaUnavailable: A producer could not start in time.
        """
        await asyncio.gather(*(self._open(tp) for tp in partitions))

    async def _open(self, tp: TP) -> None:
        await self.close([tp])  # a producer left from before (lost, say) is done
        client = AIOKafkaProducer(
            **_producer_kwargs(self._config), transactional_id=self._config.transactional_id(*tp)
        )
        try:
            await asyncio.wait_for(client.start(), self._timeout_s)
            await asyncio.wait_for(client.begin_transaction(), self._timeout_s)
        except (KafkaError, TimeoutError, OSError) as exc:
            with contextlib.suppress(KafkaError, TimeoutError, OSError):
                await asyncio.wait_for(client.stop(), STOP_TIMEOUT_S)
            raise KafkaUnavailable(f"cannot start the producer of {tp}: {exc!r}") from exc
        self._clients[tp] = client
        self._producers[tp] = OutcomeProducer(client)

    def producer_for(self, tp: TP) -> OutcomeProducer:
        """The producer of input partition ``tp`` (KeyError if it is not open: a bug)."""
        return self._producers[tp]

    async def commit(self, tp: TP, offset: int) -> None:
        """Add ``offset`` (the input partition's next offset) to ``tp``'s transaction, commit
        it (with every outcome sent since the last commit) and begin the next one.

        Raises:
            PartitionFenced: Another producer took the transactional id: we lost ``tp``.
            CommitFailed: The transaction could not be committed in time; its outcomes are
                not visible to read_committed consumers and its offsets are not committed.
        """
        client = self._clients[tp]
        offsets = {TopicPartition(*tp): OffsetAndMetadata(offset, "")}
        try:
            await asyncio.wait_for(
                client.send_offsets_to_transaction(offsets, self._config.group_id), self._timeout_s
            )
            await asyncio.wait_for(client.commit_transaction(), self._timeout_s)
            await asyncio.wait_for(client.begin_transaction(), self._timeout_s)
        except ProducerFenced as exc:
            raise PartitionFenced(f"the producer of {tp} was fenced: {exc}") from exc
        except (KafkaError, TimeoutError, OSError, IllegalOperation, AssertionError) as exc:
            # aiokafka: IllegalOperation, or AssertionError on a transition its state forbids
            if _fenced(client):  # found out on a send before this commit
                raise PartitionFenced(f"the producer of {tp} was fenced: {exc!r}") from exc
            raise CommitFailed(f"transaction of {tp} not committed: {exc!r}") from exc

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every record sent by the open transactions is acknowledged."""
        try:
            flushes = (c.flush() for c in self._clients.values() if not _fenced(c))
            await asyncio.wait_for(asyncio.gather(*flushes), timeout_s)
        except (KafkaError, TimeoutError):
            return False
        return True

    async def close(self, partitions: Iterable[TP]) -> None:
        """Abort the open transaction of each partition (what it holds is redone by whoever
        processes the partition next) and stop its producer, each bounded."""
        for tp in list(partitions):
            client = self._clients.pop(tp, None)
            self._producers.pop(tp, None)
            if client is None:
                continue
            if _fenced(client):  # nothing to abort (reading the error also marks it seen)
                with contextlib.suppress(KafkaError, TimeoutError, OSError):
                    await asyncio.wait_for(client.stop(), STOP_TIMEOUT_S)
                continue
            with contextlib.suppress(
                KafkaError, TimeoutError, OSError, IllegalOperation, AssertionError
            ):
                await asyncio.wait_for(client.abort_transaction(), self._timeout_s)
            with contextlib.suppress(KafkaError, TimeoutError, OSError):
                await asyncio.wait_for(client.stop(), STOP_TIMEOUT_S)

    async def close_all(self) -> None:
        await self.close(list(self._clients))


class KafkaClients:
    """The producer(s) and the group consumer of one instance, started and stopped together.

    ``producer`` satisfies :class:`processor.outcomes.Producer`; ``consumer`` is the
    :class:`KafkaConsumer` the intake and the status poller use. With ``exactly_once`` the
    consumer reads committed records only, and ``transactions`` replaces ``producer``.
    """

    def __init__(self, config: KafkaConfig, *, max_partition_fetch_bytes: int,
                 drain_timeout_s: float, exactly_once: bool = False) -> None:  # fmt: skip
        self._config = config
        self._producer = _make_producer(config)
        self.producer = OutcomeProducer(self._producer)
        isolation = "read_committed" if exactly_once else "read_uncommitted"
        self._consumer = _make_consumer(
            config, max_partition_fetch_bytes, drain_timeout_s, isolation
        )
        self.consumer = KafkaConsumer(
            self._consumer, config.request_timeout_ms / 1000, config.auto_offset_reset
        )
        self.transactions = TransactionalProducers(config) if exactly_once else None

    async def start(self) -> None:
        """Start the clients (bootstrap, metadata), each within ``kafka.connect_timeout_s``;
        transactional producers start on assignment.

        Raises:
            KafkaUnavailable: The broker could not be reached or did not answer in time (the
                message names the address); nothing is left running.
        """
        timeout_s = self._config.connect_timeout_s
        address = self._config.bootstrap_servers
        try:
            if self.transactions is None:
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
        if self.transactions is not None:
            return await self.transactions.flush(timeout_s)
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
        if self.transactions is not None:  # what was not committed is redone
            await self.transactions.close_all()
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


async def topic_partitions(config: KafkaConfig, topics: Sequence[str]) -> dict[str, list[int]]:
    """The partitions of each of ``topics`` that exists (a fresh metadata request: a client's
    own metadata knows only the topics it subscribed to).

    Raises:
        KafkaUnavailable: The broker could not be reached.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=config.bootstrap_servers, request_timeout_ms=config.request_timeout_ms
    )
    try:
        await asyncio.wait_for(admin.start(), ADMIN_TIMEOUT_S)
        described = await asyncio.wait_for(admin.describe_topics(list(topics)), ADMIN_TIMEOUT_S)
    except (KafkaError, TimeoutError, OSError) as exc:
        raise KafkaUnavailable(
            f"cannot describe topics on {config.bootstrap_servers}: {exc!r}"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)
    return {
        t["topic"]: sorted(p["partition"] for p in t["partitions"])
        for t in described
        if t["error_code"] == 0
    }


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
        self._client = _make_producer(config)
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

    async def stop(self) -> None:
        with contextlib.suppress(KafkaError, TimeoutError, OSError):
            await asyncio.wait_for(self._client.stop(), STOP_TIMEOUT_S)
