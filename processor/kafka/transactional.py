"""``delivery: exactly_once``: one transactional producer per assigned input partition, which
commits that partition's outcomes with its input offsets; fencing by transactional id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from aiokafka import (
    AIOKafkaProducer,
    TopicPartition,
)
from aiokafka.errors import (
    IllegalOperation,
    KafkaError,
    ProducerFenced,
)
from aiokafka.structs import OffsetAndMetadata

from processor.config import KafkaConfig
from processor.errors import CommitFailed, KafkaUnavailable, PartitionFenced
from processor.kafka.factory import (
    STOP_TIMEOUT_S,
    TP,
    OutcomeProducer,
    producer_fenced,
    producer_kwargs,
)


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
    settings as the outcome producer (:func:`producer_kwargs`).
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
            **producer_kwargs(self._config), transactional_id=self._config.transactional_id(*tp)
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
            if producer_fenced(client):  # found out on a send before this commit
                raise PartitionFenced(f"the producer of {tp} was fenced: {exc!r}") from exc
            raise CommitFailed(f"transaction of {tp} not committed: {exc!r}") from exc

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every record sent by the open transactions is acknowledged."""
        try:
            flushes = (c.flush() for c in self._clients.values() if not producer_fenced(c))
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
            if producer_fenced(client):  # nothing to abort (reading the error also marks it seen)
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
