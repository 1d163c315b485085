"""The group consumer in the service's terms: poll, pause, resume, commit, rebalance
callbacks, the broker probe and the lag from the broker's end offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Protocol

from aiokafka import (
    AIOKafkaConsumer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.errors import (
    KafkaError,
)
from aiokafka.structs import OffsetAndMetadata

from processor.errors import CommitFailed, KafkaUnavailable
from processor.inputs import InputRecord
from processor.kafka.factory import TP


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
