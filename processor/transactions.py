"""Exactly-once commits: each input partition's outcomes and offsets in one Kafka transaction.

With ``delivery: exactly_once`` the intake commits through :class:`TransactionalCommits`
instead of the consumer. Every assigned input partition has its own transactional producer
(``processor.kafka.TransactionalProducers``), which publishes the partition's outcomes (valid,
invalid and dead letters alike) inside its open transaction. A commit of partition ``p``:

1. :meth:`Engine.hold` cuts ``p`` at its next offset: records taken after the cut wait;
2. :meth:`Engine.settle` waits until every record below the cut is acknowledged, so the
   transaction holds exactly the outcomes of the offsets below the cut (records finish out
   of order; without the cut a transaction could hold an outcome whose offset it does not
   commit, or commit an offset whose outcome it lacks);
3. the cut goes into the transaction (``send_offsets_to_transaction``), the transaction
   commits, the next one begins, and the hold ends.

Partitions commit independently and concurrently, every ``engine.commit_interval_s``, on
revoke and at shutdown. Failures:

- a partition whose records do not settle within ``engine.drain_timeout_s`` on a periodic
  commit, or whose transaction fails to commit, is fatal: the process stops, its open
  transactions are aborted, and the restart redoes them from the committed offsets (this also
  keeps every transaction well inside the broker's transaction timeout);
- on revoke and at shutdown a partition that did not drain is not committed: its transaction
  is aborted and the next owner redoes it;
- a fenced producer (:class:`~processor.errors.PartitionFenced`) means another instance owns
  the partition now: its work is dropped without a commit (:meth:`Engine.lose`).

On assignment the producers start first (fencing the previous owner and aborting its open
transaction), then the consumer re-reads the committed offsets, which that owner's last
commit may have moved after the assignment read them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Protocol

import structlog

from processor.engine import TP, Engine
from processor.errors import CommitFailed, PartitionFenced
from processor.metrics import Metrics

log = structlog.get_logger("processor.transactions")


class PartitionTransactions(Protocol):
    """One transactional producer per input partition (``processor.kafka``'s, or a fake)."""

    async def open(self, partitions: Iterable[TP]) -> None: ...
    async def commit(self, tp: TP, offset: int) -> None: ...
    async def close(self, partitions: Iterable[TP]) -> None: ...


class Rewinder(Protocol):
    """Seeks partitions back to their committed offsets (``processor.kafka.KafkaConsumer``)."""

    async def rewind(self, partitions: Iterable[TP]) -> None: ...


class TransactionalCommits:
    """The intake's commits in exactly-once mode: per partition, hold, settle, commit."""

    def __init__(
        self,
        *,
        engine: Engine,
        transactions: PartitionTransactions,
        consumer: Rewinder,
        settle_timeout_s: float,
        metrics: Metrics,
    ) -> None:
        self._engine = engine
        self._transactions = transactions
        self._consumer = consumer
        self._settle_timeout_s = settle_timeout_s
        self._metrics = metrics
        # periodic commits run in the intake's task, revokes in aiokafka's: one at a time
        self._lock = asyncio.Lock()

    async def assigned(self, partitions: set[TP]) -> None:
        """Fence the previous owners and start from the offsets their last commits left."""
        await self._transactions.open(partitions)
        await self._consumer.rewind(partitions)

    async def revoked(self, partitions: set[TP]) -> None:
        """Abort what was not committed and close the partitions' producers."""
        await self._transactions.close(partitions)

    async def commit(self, partitions: Iterable[TP] | None = None, *, final: bool) -> bool:
        """Commit each (given) partition that took records since its last commit.

        ``final`` (revoke, shutdown: the caller drained already) commits what settled and
        leaves the rest uncommitted; otherwise records below the cut get
        ``settle_timeout_s`` to finish, and a partition that misses it is fatal.

        Returns:
            True if every partition that had something to commit committed it.
        """
        async with self._lock:
            wanted = list(self._engine.assigned if partitions is None else partitions)
            results = await asyncio.gather(*(self._commit(tp, final) for tp in wanted))
        return all(results)

    async def _commit(self, tp: TP, final: bool) -> bool:
        engine = self._engine
        cut = engine.hold(tp)
        if cut is None:
            return True
        started = time.monotonic()
        try:
            if not await engine.settle(tp, cut, 0.0 if final else self._settle_timeout_s):
                if not final and engine.owns(tp):
                    engine.fail(CommitFailed(
                        f"records of {tp} below offset {cut} did not finish within "
                        f"{self._settle_timeout_s}s: its transaction cannot be committed"
                    ))  # fmt: skip
                log.warning("transaction.not_committed", topic=tp[0], partition=tp[1], cut=cut)
                return False
            await self._transactions.commit(tp, cut)
        except PartitionFenced as exc:
            engine.lose(tp, exc)
            return False
        except CommitFailed as exc:
            self._metrics.commit_failures.inc()
            engine.fail(exc)
            return False
        finally:
            engine.unhold(tp)
        self._metrics.commit_seconds.observe(time.monotonic() - started)
        engine.mark_committed({tp: cut})
        return True
