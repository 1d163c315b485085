"""The engine: ordering lanes, bounded concurrency, in-flight accounting, completion.

For every taken record the engine runs the pipeline, hands the outcome to the publisher,
and marks the record finished in its partition's :class:`~processor.offsets.PartitionOffsets`
only when the broker acknowledges the outcome.

- **Lanes** keep order: records of one lane run one after another, lanes run in parallel.
  The lane of a record is its partition and key (``ordering: key``; a record without a key
  is a lane of its own), its partition (``partition``), or itself (``unordered``). A lane
  moves to its next record once the outcome is *queued* in the idempotent producer, which
  keeps per-partition order, so acknowledgements overlap.
- **Bounds**: at most ``max_concurrency`` records are in the pipeline at once; the intake
  asks :meth:`Engine.capacity` and :meth:`Engine.partitions_over_cap` to pause partitions.
- **Commits**: the engine alone keeps what is committable and what was committed
  (:meth:`Engine.committable`, :meth:`Engine.mark_committed`, :meth:`Engine.committed`);
  the intake commits what it is told and reports back.
- **Holds** (exactly-once, :mod:`processor.transactions`): :meth:`Engine.hold` cuts a
  partition at its next offset; records taken after the cut do not start until
  :meth:`Engine.unhold`, so once :meth:`Engine.settle` sees every record below the cut
  finished, the outcomes published so far are exactly those of the offsets below the cut.
- **Taken at once**: a record whose lane is idle goes through :meth:`Pipeline.front` as it
  is submitted, without a task of its own; only a record with upstream checks to run gets a
  lane task (and a slot). Outcomes reach the producer through one **outbox** per input
  partition, a FIFO drained by one task, so a lane's outcomes keep their order whichever
  way each record went. With tracing on, each lane publishes its own records inside their
  spans instead (no outbox, no records taken at once).
- A failed acknowledgement is fatal (:attr:`Engine.fatal`): the record is not committed,
  the process stops, and a restart redoes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Literal, cast

import structlog

from processor import tracing
from processor.errors import PublishError
from processor.inputs import InputRecord
from processor.offsets import PartitionOffsets
from processor.outcomes import DeadLetter, Outcome, OutcomePublisher, Valid, outcome_label
from processor.pipeline import Pending, Pipeline
from processor.slots import Slots
from processor.waits import CURRENT_PARTITION

TP = tuple[str, int]
#: A lane: its partition first, then the key (or offset) that orders records within it.
LaneKey = tuple[Hashable, ...]
#: A lane's record, with its pending checks when it went through the pipeline's front already.
Queued = tuple[InputRecord, Pending | None]
#: A finished record waiting in its partition's outbox: its bookkeeping, the outcome, the
#: seconds its processing took.
Finished = tuple[PartitionOffsets, InputRecord, Outcome, float]
log = structlog.get_logger("processor.engine")


class Engine:
    """Runs records through the pipeline in lanes and tracks what is safe to commit."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        publisher: OutcomePublisher,
        ordering: Literal["key", "partition", "unordered"],
        max_concurrency: int,
        max_in_flight: int,
        max_in_flight_per_partition: int,
        on_outcome: Callable[[Outcome, float], None] = lambda _o, _s: None,
        is_fenced: Callable[[BaseException], bool] = lambda _e: False,
        paused_by_guard: Callable[[], bool] = lambda: False,
    ) -> None:
        """``is_fenced`` (exactly-once) tells a publish error that means another instance
        took the record's partition over: that partition is lost (:meth:`lose`), not fatal."""
        self._pipeline = pipeline
        self._publisher = publisher
        self._ordering = ordering
        self._slots = Slots(max_concurrency)
        self.max_in_flight = max_in_flight
        self.max_in_flight_per_partition = max_in_flight_per_partition
        self._on_outcome = on_outcome
        self._is_fenced = is_fenced
        self._paused_by_guard = paused_by_guard
        self._partitions: dict[TP, PartitionOffsets] = {}
        self._lanes: dict[LaneKey, deque[Queued]] = {}
        self._lane_tasks: dict[LaneKey, asyncio.Task[None]] = {}
        #: Tracing on: lanes publish their own outcomes, in their records' spans.
        self._direct = tracing.active()
        self._outboxes: dict[TP, deque[Finished]] = {}
        self._outbox_tasks: dict[TP, asyncio.Task[None]] = {}
        #: Exactly-once: per held partition, its cut and the event that ends the hold.
        self._holds: dict[TP, tuple[int, asyncio.Event]] = {}
        self._in_flight = 0
        self._progress = asyncio.Event()
        self.fatal: BaseException | None = None
        self.finished_total = 0
        #: When a record last finished (monotonic), for the stall watchdog.
        self.last_progress_at = time.monotonic()
        #: Set by the memory watchdog: take nothing new while True.
        self.memory_pressure = False

    # -- partitions -------------------------------------------------------------------
    def assign(self, partitions: Iterable[TP]) -> None:
        for tp in partitions:
            self._partitions.setdefault(tp, PartitionOffsets())

    def release(self, partitions: Iterable[TP], *, lost: bool = False) -> None:
        """Forget partitions (after revoke): their unfinished lanes are cancelled.

        ``lost`` (exactly-once, fenced): their outcomes' failed acknowledgements are expected,
        not fatal; nothing of theirs is committed.
        """
        gone = set(partitions)
        for tp in gone:
            state = self._partitions.pop(tp, None)
            if state is not None:
                self._in_flight -= state.in_flight
                state.lost = lost
            self.unhold(tp)
        for lane_key, task in list(self._lane_tasks.items()):
            if lane_key[0] in gone:
                task.cancel()
        for tp in gone:  # unsent outcomes are dropped: the partition's next owner redoes them
            self._outboxes.pop(tp, None)
            if (outbox := self._outbox_tasks.pop(tp, None)) is not None:
                outbox.cancel()

    def offsets(self, tp: TP) -> PartitionOffsets | None:
        return self._partitions.get(tp)

    def owns(self, tp: TP) -> bool:
        """True while ``tp`` is assigned (a fetch may return records of a revoked one)."""
        return tp in self._partitions

    # -- commits: the engine owns what is finished and what was committed ---------------
    def committable(self, partitions: Iterable[TP] | None = None) -> dict[TP, int]:
        """The watermark of each (given) assigned partition that advanced since its last
        commit: one past the longest finished prefix, never "highest seen"."""
        wanted = self._partitions if partitions is None else partitions
        found = {}
        for tp in wanted:
            state = self._partitions.get(tp)
            if state is not None and (offset := state.to_commit()) is not None:
                found[tp] = offset
        return found

    def mark_committed(self, offsets: Mapping[TP, int]) -> None:
        """Record that ``offsets`` were committed (partitions released meanwhile are skipped)."""
        for tp, offset in offsets.items():
            state = self._partitions.get(tp)
            if state is not None:
                state.committed = offset

    def committed(self) -> dict[TP, int | None]:
        """Per assigned partition, the offset this process last committed (None: not yet)."""
        return {tp: state.committed for tp, state in self._partitions.items()}

    @property
    def assigned(self) -> list[TP]:
        return list(self._partitions)

    # -- holds: cutting a partition's transaction (exactly-once) ------------------------
    def hold(self, tp: TP) -> int | None:
        """Cut ``tp`` at its next offset: records taken from now on wait until
        :meth:`unhold`. Returns the cut, or None (and no hold) when nothing was taken since
        the last commit or the partition is not assigned."""
        state = self._partitions.get(tp)
        cut = state.next_to_take() if state is not None else None
        if cut is not None:
            self._holds[tp] = (cut, asyncio.Event())
        return cut

    async def settle(self, tp: TP, cut: int, timeout_s: float) -> bool:
        """Wait until every record of ``tp`` below ``cut`` is finished (its outcome acked).

        Returns:
            False if ``timeout_s`` passed first, a fatal error happened, or ``tp`` was released.
        """
        deadline = time.monotonic() + timeout_s
        while self.fatal is None and (state := self._partitions.get(tp)) is not None:
            if state.finished_below(cut):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await self.wait_progress(min(left, 0.5))
        return False

    def unhold(self, tp: TP) -> None:
        """Let the records of ``tp`` past its cut start."""
        held = self._holds.pop(tp, None)
        if held is not None:
            held[1].set()

    # -- load -------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._in_flight

    def in_flight_of(self, partitions: Iterable[TP]) -> int:
        return sum(s.in_flight for tp in partitions if (s := self._partitions.get(tp)))

    def capacity(self) -> int:
        """How many more records may be taken before the global cap is reached."""
        if self.memory_pressure or self._paused_by_guard():
            return 0
        return max(0, self.max_in_flight - self._in_flight)

    def oldest_pending(self) -> tuple[TP, int] | None:
        """The partition and offset of a record that holds a watermark back, if any."""
        for tp, state in self._partitions.items():
            first = state.first_pending()
            if first is not None:
                return tp, first
        return None

    def partitions_over_cap(self) -> set[TP]:
        cap = self.max_in_flight_per_partition
        return {tp for tp, s in self._partitions.items() if s.in_flight >= cap}

    async def wait_progress(self, timeout_s: float) -> None:
        """Wait until some record finishes, or ``timeout_s`` passes."""
        self._progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), timeout_s)

    # -- intake -----------------------------------------------------------------------
    def _lane_key(self, record: InputRecord) -> LaneKey:
        tp = (record.topic, record.partition)
        if self._ordering == "partition":
            return (tp,)
        if self._ordering == "key" and record.key is not None:
            return (tp, record.key)
        return (tp, record.offset)

    def _held(self, tp: TP, offset: int) -> bool:
        held = self._holds.get(tp)
        return held is not None and offset >= held[0]

    def submit(self, record: InputRecord) -> None:
        """Take one record. Its partition must be assigned.

        A record whose lane is idle goes through the pipeline's front now; it gets a lane
        task only if it has checks to run (or is past a hold's cut, or tracing is on)."""
        tp = (record.topic, record.partition)
        state = self._partitions[tp]
        state.take(record.offset)
        if self._in_flight == 0:  # idle until now is not a stall
            self.last_progress_at = time.monotonic()
        self._in_flight += 1
        key = self._lane_key(record)
        lane = self._lanes.get(key)
        pending = None
        if lane is None:
            if not self._direct and not self._held(tp, record.offset):
                started = time.perf_counter()
                front = self._pipeline.front(record)
                if not isinstance(front, Pending):
                    self._post(tp, state, record, front, time.perf_counter() - started)
                    return
                pending = front
            lane = self._lanes[key] = deque()
            self._lane_tasks[key] = asyncio.create_task(self._run_lane(key, lane))
        lane.append((record, pending))

    async def _run_lane(self, key: LaneKey, lane: deque[Queued]) -> None:
        tp = cast(TP, key[0])
        CURRENT_PARTITION.set(tp)  # a lane never leaves its partition
        try:
            while lane:
                record, pending = lane[0]
                if (held := self._holds.get(tp)) is not None and record.offset >= held[0]:
                    await held[1].wait()
                    continue  # the hold may have ended with a release
                # the bookkeeping of the assignment this record was taken under
                state = self._partitions.get(tp)
                async with self._slots:
                    started = time.perf_counter()
                    if self._direct:
                        await self._publish_traced(state, record, started)
                    else:
                        front = pending or self._pipeline.front(record)
                        if isinstance(front, Pending):
                            front = await self._pipeline.finish(front)
                        if state is not None:
                            self._post(tp, state, record, front, time.perf_counter() - started)
                lane.popleft()
        except asyncio.CancelledError:
            pass  # partition revoked or shutdown deadline passed: the next owner redoes it
        except Exception as exc:  # noqa: BLE001 - a publish failure stops the process
            self._publish_failed(tp, exc)
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]
                del self._lane_tasks[key]

    async def _publish_traced(
        self, state: PartitionOffsets | None, record: InputRecord, started: float
    ) -> None:
        with tracing.record_span(record) as span:
            outcome = await self._pipeline.process(record)
            if span is not None:
                tracing.annotate(span, *outcome_label(outcome))
            ack = await self._publisher.publish(record, outcome)
        took_s = time.perf_counter() - started
        ack.add_done_callback(functools.partial(self._acked, state, record, outcome, took_s))

    def _publish_failed(self, tp: TP, exc: Exception) -> None:
        if self._is_fenced(exc):
            self.lose(tp, exc)
        else:
            self.fail(PublishError(f"could not queue an outcome: {exc!r}"))

    # -- outboxes: outcomes to the producer in the order their records finished ---------
    def _post(
        self, tp: TP, state: PartitionOffsets, record: InputRecord, outcome: Outcome, took_s: float
    ) -> None:
        if self._partitions.get(tp) is not state:
            return  # released meanwhile: the partition's current owner redoes it
        outbox = self._outboxes.get(tp)
        if outbox is None:
            outbox = self._outboxes[tp] = deque()
            self._outbox_tasks[tp] = asyncio.create_task(self._send_outbox(tp, outbox))
        outbox.append((state, record, outcome, took_s))

    async def _send_outbox(self, tp: TP, outbox: deque[Finished]) -> None:
        """Queue the outbox's outcomes in the producer, oldest first, until it is empty
        (:meth:`_post` starts another when the next outcome comes)."""
        CURRENT_PARTITION.set(tp)
        publish, acked = self._publisher.publish_then, self._acked
        try:
            while outbox:
                state, record, outcome, took_s = outbox[0]
                await publish(
                    record, outcome, functools.partial(acked, state, record, outcome, took_s)
                )
                outbox.popleft()
        except asyncio.CancelledError:
            pass  # revoked or shut down: the next owner redoes what was not sent
        except Exception as exc:  # noqa: BLE001 - a publish failure stops the process
            self._publish_failed(tp, exc)
        finally:
            if self._outboxes.get(tp) is outbox:
                del self._outboxes[tp]
                del self._outbox_tasks[tp]

    def _acked(
        self,
        state: PartitionOffsets | None,
        record: InputRecord,
        outcome: Outcome,
        took_s: float,
        future: asyncio.Future[Any],
    ) -> None:
        if future.cancelled() or future.exception() is not None:
            if state is not None and state.lost:
                return  # fenced: the partition's new owner redoes it
            err = future.exception() if not future.cancelled() else None
            if err is not None and self._is_fenced(err):
                self.lose((record.topic, record.partition), err)
                return
            self.fail(PublishError(f"outcome not acknowledged: {err!r}"))
            return
        if state is None or self._partitions.get((record.topic, record.partition)) is not state:
            return  # released (and maybe re-assigned) meanwhile: the current owner redoes it
        state.finish(record.offset)
        self._in_flight -= 1
        self.finished_total += 1
        self.last_progress_at = time.monotonic()
        self._progress.set()
        self._on_outcome(outcome, took_s)
        if isinstance(outcome, DeadLetter):
            log.info(
                "record.dead_lettered", topic=record.topic, partition=record.partition,
                offset=record.offset, reason=outcome.reason.value, error=outcome.error_class,
            )  # fmt: skip
        elif not isinstance(outcome, Valid):
            log.debug(
                "record.invalid", topic=record.topic, partition=record.partition,
                offset=record.offset, record_id=outcome.data.record_id,
            )  # fmt: skip

    def lose(self, tp: TP, exc: BaseException) -> None:
        """Exactly-once: another instance fenced our producer of ``tp``. Drop its work
        (nothing of it is committed; the new owner redoes it) and take no more of its records."""
        if tp in self._partitions:
            self.release([tp], lost=True)
            log.warning("engine.partition_lost", topic=tp[0], partition=tp[1], error=str(exc))
        self._progress.set()

    def fail(self, exc: BaseException) -> None:
        """Stop the process: ``exc`` is fatal (its records are redone after a restart)."""
        if self.fatal is None:
            self.fatal = exc
            log.error("engine.fatal", error=str(exc))
        self._progress.set()

    # -- drain ------------------------------------------------------------------------
    async def drain(self, partitions: Iterable[TP] | None, timeout_s: float) -> bool:
        """Wait until the given partitions (all if None) have nothing in flight.

        Returns:
            True if drained, False if ``timeout_s`` passed first (or a fatal error happened).
        """
        wanted = list(self._partitions) if partitions is None else list(partitions)
        deadline = time.monotonic() + timeout_s
        while self.in_flight_of(wanted) > 0 and self.fatal is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await self.wait_progress(min(left, 0.5))
        return self.fatal is None

    async def cancel_all(self) -> None:
        """Cancel every lane (shutdown after the drain deadline) and wait for them."""
        tasks = [*self._lane_tasks.values(), *self._outbox_tasks.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
