"""The intake loop: poll, pause and resume for back-pressure, commit watermarks, rebalance.

:class:`Intake` drives a :class:`GroupConsumer` (in production ``processor.kafka``'s
``KafkaConsumer``; partitions are ``(topic, partition)`` tuples). It keeps calling
``getmany`` even when every partition is paused (a consumer that stops polling is thrown
out of the group), takes at most as many records as the engine has room for, pauses
partitions over their cap and resumes them as work drains, and every ``commit_interval_s``
commits what :meth:`Engine.committable` offers. On revoke it drains the revoked partitions
with a deadline, commits them, and lets them go; whatever did not finish is redone by the
new owner. With ``delivery: exactly_once`` commits, assignments and revokes go through
:class:`~processor.transactions.TransactionalCommits` (one transaction per partition).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

import structlog

from processor.engine import TP, Engine
from processor.errors import CommitFailed, KafkaUnavailable
from processor.inputs import InputRecord
from processor.kafka import RebalanceHandler
from processor.metrics import Metrics
from processor.transactions import TransactionalCommits
from processor.waits import WaitBoard

log = structlog.get_logger("processor.intake")


class GroupConsumer(Protocol):
    """The consumer the intake drives (``processor.kafka.KafkaConsumer``, or a test's fake)."""

    def subscribe(self, topic: str, handler: RebalanceHandler) -> None: ...
    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> Mapping[TP, Sequence[InputRecord]]: ...
    def pause(self, partitions: set[TP]) -> None: ...
    def resume(self, partitions: set[TP]) -> None: ...
    async def commit(self, offsets: Mapping[TP, int]) -> None: ...


class Intake:
    """Feeds the engine from Kafka and commits what it finished."""

    def __init__(
        self,
        *,
        consumer: GroupConsumer,
        engine: Engine,
        topic: str,
        fetch_max_records: int,
        poll_timeout_ms: int,
        commit_interval_s: float,
        drain_timeout_s: float,
        board: WaitBoard,
        metrics: Metrics,
        transactions: TransactionalCommits | None = None,
    ) -> None:
        self._consumer = consumer
        self._transactions = transactions
        self._board = board
        self._metrics = metrics
        self._engine = engine
        self._topic = topic
        self._fetch_max_records = fetch_max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._commit_interval_s = commit_interval_s
        self._drain_timeout_s = drain_timeout_s
        self._paused: set[TP] = set()
        #: Once the global cap paused every partition, they resume only when this many
        #: records fit again. Resuming at the first free place paused and resumed a few
        #: times a second with a slow upstream (rate-limited: 115 times in 28 s), and
        #: every resume fetched again what the pause had dropped (issue 15).
        self._resume_room = max(1, min(fetch_max_records, engine.max_in_flight // 10))
        self._starved = False
        self._stop = asyncio.Event()
        self.consumed_total = 0
        # Liveness and readiness facts (processor.status reads them):
        self.running = False  # the loop runs, or ended on stop() (a graceful shutdown is alive)
        self.joined = False  # the group assigned us a (possibly empty) set of partitions
        self.busy_since: float | None = None  # loop work started (None while it polls)

    def subscribe(self) -> None:
        self._consumer.subscribe(self._topic, self)

    def stop(self) -> None:
        """Stop taking new records (the loop returns after its current poll)."""
        self._stop.set()

    async def run(self, *, burst: bool = False) -> None:
        """Poll until :meth:`stop` or a fatal engine error.

        With ``burst`` (arq's term) the loop also returns, after a last commit, once a poll
        brings nothing while nothing is in flight: a backlog worked off, a test's script done.
        """
        self.running = True
        try:
            await self._loop(burst)
        finally:
            self.running, self.busy_since = self._stop.is_set(), None

    async def _loop(self, burst: bool) -> None:
        next_commit = time.monotonic() + self._commit_interval_s
        # exactly-once: a periodic commit runs beside the loop, so records keep being taken
        # (those past a partition's cut wait in their lanes) and start the moment it ends
        committing: asyncio.Task[bool] | None = None
        try:
            while not self._stop.is_set() and self._engine.fatal is None:
                self.busy_since = time.monotonic()
                if time.monotonic() >= next_commit:  # also while intake is paused
                    if self._transactions is None:
                        await self.commit(final=False)
                    elif committing is None or committing.done():
                        committing = asyncio.create_task(self.commit(final=False))
                    next_commit = time.monotonic() + self._commit_interval_s
                self._apply_backpressure()
                # Poll even when full: every partition is paused then, so nothing comes back,
                # but the group sees us alive (max_poll_interval_ms).
                room = max(1, min(self._engine.capacity(), self._fetch_max_records))
                self.busy_since = None  # waiting on the broker is not being stuck
                batches = await self._poll(room)
                self.busy_since = time.monotonic()
                if burst and not batches and self._engine.in_flight == 0:
                    await self.commit()
                    return
                for tp, records in batches.items():
                    if not self._engine.owns(tp):
                        continue  # revoked while the fetch was under way
                    for record in records:
                        self._engine.submit(record)
                    self.consumed_total += len(records)
                    self._metrics.records_consumed.inc(len(records))
        finally:
            if committing is not None:
                await committing  # never raises: a failed commit is the engine's fatal error

    async def _poll(self, room: int) -> Mapping[TP, Sequence[InputRecord]]:
        """``getmany``, abandoned when stop is asked: while the group is (re)joining and we
        hold no partition, aiokafka waits for an assignment whatever ``timeout_ms`` says."""
        poll = asyncio.ensure_future(
            self._consumer.getmany(timeout_ms=self._poll_timeout_ms, max_records=room)
        )
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({poll, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop
        if not poll.done():
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
            return {}
        return poll.result()

    def _apply_backpressure(self) -> None:
        engine = self._engine
        assigned = set(engine.assigned)
        waiting = self._board.blocked()
        blocked = {tp for tp in assigned if tp in waiting}
        room = engine.capacity()
        self._starved = room == 0 or (self._starved and room < self._resume_room)
        want = assigned if self._starved else engine.partitions_over_cap() | blocked
        pause, resume = want - self._paused, self._paused - want
        if pause:
            self._consumer.pause(pause)
            log.info("intake.paused", partitions=sorted(pause), waiting_on_upstream=len(blocked),
                     in_flight=engine.in_flight)  # fmt: skip
        if resume:
            self._consumer.resume(resume)
            log.info("intake.resumed", partitions=sorted(resume), in_flight=engine.in_flight)
        self._paused = want
        self._metrics.paused_partitions.set(len(want))
        self._metrics.blocked_partitions.set(len(blocked))
        self._metrics.in_flight.set(engine.in_flight)

    async def commit(self, partitions: set[TP] | None = None, *, final: bool = True) -> bool:
        """Commit the watermark of each (given) partition that advanced.

        A commit that fails because the group is rebalancing is logged, not fatal: the
        offsets are committed by the next commit or redone by the next owner. Exactly-once:
        see :meth:`TransactionalCommits.commit` (``final``: after a drain).
        """
        if self._transactions is not None:
            return await self._transactions.commit(partitions, final=final)
        offsets = self._engine.committable(partitions)
        if not offsets:
            return True
        started = time.monotonic()
        try:
            await self._consumer.commit(offsets)
        except CommitFailed as exc:
            self._metrics.commit_failures.inc()
            log.warning("intake.commit_failed", error=str(exc), partitions=len(offsets))
            return False
        self._metrics.commit_seconds.observe(time.monotonic() - started)
        self._engine.mark_committed(offsets)
        return True

    async def on_assigned(self, partitions: set[TP]) -> None:
        self.joined = True  # also with no partitions: a standby member is in the group
        if self._transactions is not None:
            # no record is taken before the producers fenced the previous owner and the
            # offsets are read again: what a poll returns meanwhile is not owned yet, dropped
            self._consumer.pause(partitions)
            try:
                await self._transactions.assigned(partitions)
            except KafkaUnavailable as exc:  # records of these partitions cannot be taken
                self._engine.fail(exc)
                return
            self._consumer.resume(partitions)
        self._engine.assign(partitions)
        self._paused -= partitions
        self._metrics.assigned_partitions.set(len(self._engine.assigned))
        log.info("intake.assigned", partitions=sorted(partitions))

    async def on_revoked(self, partitions: set[TP]) -> None:
        drained = await self._engine.drain(partitions, self._drain_timeout_s)
        await self.commit(partitions)
        self._engine.release(partitions)
        if self._transactions is not None:
            await self._transactions.revoked(partitions)
        self._paused -= partitions
        self._metrics.assigned_partitions.set(len(self._engine.assigned))
        for topic, partition in partitions:  # no stale lag series for partitions we gave up
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(topic, str(partition))
        log.info("intake.revoked", partitions=sorted(partitions), drained=drained)
