"""The intake loop against a scripted consumer: records reach the engine, commits carry the
watermark, revoke drains, commits and releases; pause/resume and failed commits are logged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from structlog.testing import capture_logs

from processor.engine import TP, Engine
from processor.errors import CommitFailed
from processor.inputs import InputRecord, Record
from processor.intake import Intake
from processor.kafka import RebalanceHandler
from processor.metrics import Metrics
from processor.outcomes import DeadLetter, Outcome, OutcomePublisher
from processor.pipeline import Pipeline
from processor.waits import WaitBoard
from schemas.outcomes import ReasonCode
from tests.support.waiting import wait_until

TP0, TP1 = ("in", 0), ("in", 1)
MAX_POLLS = 500
DEADLINE_S = 10.0
#: A poll: the records it returns, and the partitions revoked before it returns them.
Step = tuple[dict[TP, list[Record]], set[TP]]


def _records(tp: TP, first: int, count: int) -> list[Record]:
    return [Record(tp[0], tp[1], o, 1_700_000_000_000, b"k%d" % o, b"{}")
            for o in range(first, first + count)]  # fmt: skip


class ScriptedConsumer:
    """A group consumer that plays a script, one step per poll, then polls empty.

    Like aiokafka, it runs the rebalance callbacks inside ``getmany``; unlike it, it gives
    up after ``MAX_POLLS`` polls, so a loop that would never end fails the test instead.
    """

    def __init__(self, assignment: set[TP], script: list[Step]) -> None:
        self.assignment = set(assignment)
        self.script = list(script)
        self.polls = 0
        self.paused: set[TP] = set()
        self.commits: list[dict[TP, int]] = []
        self.fail_commit = False
        self._handler: RebalanceHandler | None = None

    def subscribe(self, topic: str, handler: RebalanceHandler) -> None:
        self._handler = handler

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> Mapping[TP, Sequence[InputRecord]]:
        assert self._handler is not None
        if self.polls == 0:  # like aiokafka, the assignment arrives within the first poll
            await self._handler.on_assigned(set(self.assignment))
        self.polls += 1
        assert self.polls <= MAX_POLLS, "the intake loop did not end"
        if not self.script:
            await asyncio.sleep(timeout_ms / 1000)  # an empty poll waits its timeout
            return {}
        batches, revoked = self.script.pop(0)
        if revoked:
            assert self._handler is not None
            await self._handler.on_revoked(revoked)
            self.assignment -= revoked
        return {tp: records for tp, records in batches.items() if tp not in self.paused}

    def pause(self, partitions: set[TP]) -> None:
        self.paused |= partitions

    def resume(self, partitions: set[TP]) -> None:
        self.paused -= partitions & self.assignment

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        if self.fail_commit:
            raise CommitFailed("CommitFailedError: rebalance in progress")
        self.commits.append(dict(offsets))


class EchoPipeline:
    """Dead-letters every record at once (the outcome does not matter here)."""

    def front(self, record: InputRecord) -> Outcome:
        return DeadLetter(ReasonCode.DECODE_FAILED, "DecodeError", "test")


class LateAcks:
    """Acknowledges every outcome a few milliseconds after it is queued, like a broker."""

    async def publish_then(
        self, record: InputRecord, outcome: Outcome, on_ack: Callable[[asyncio.Future[Any]], None]
    ) -> None:
        (await self.publish(record, outcome)).add_done_callback(on_ack)

    async def publish(self, record: InputRecord, outcome: Outcome) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[Any] = loop.create_future()
        loop.call_later(0.005, ack.set_result, None)
        return ack


class Loop:
    """A real engine fed by an intake that drives a scripted consumer."""

    def __init__(self, consumer: ScriptedConsumer, commit_interval_s: float = 60.0) -> None:
        self.finished: list[tuple[int, int]] = []
        self.consumer = consumer
        self.engine = Engine(
            pipeline=cast(Pipeline, EchoPipeline()),
            publisher=cast(OutcomePublisher, LateAcks()),
            ordering="key", max_concurrency=8, max_in_flight=100,
            max_in_flight_per_partition=100, on_outcome=lambda _o, _s: None,
        )  # fmt: skip
        self.intake = Intake(
            consumer=consumer, engine=self.engine, topic="in", fetch_max_records=50,
            poll_timeout_ms=5, commit_interval_s=commit_interval_s, drain_timeout_s=5.0,
            board=WaitBoard(), metrics=Metrics(),
        )  # fmt: skip

    async def run(self) -> None:
        self.intake.subscribe()
        async with asyncio.timeout(DEADLINE_S):
            await self.intake.run(burst=True)


async def test_a_burst_run_feeds_the_engine_and_commits_each_watermark() -> None:
    """Every scripted record is finished by the engine, and the last commit of each
    partition is one past its last offset; the loop ends by itself after the script."""
    script: list[Step] = [
        ({TP0: _records(TP0, 0, 5), TP1: _records(TP1, 0, 3)}, set()),
        ({TP0: _records(TP0, 5, 4)}, set()),
    ]
    consumer = ScriptedConsumer({TP0, TP1}, script)
    loop = Loop(consumer)
    await loop.run()
    assert loop.intake.consumed_total == 12
    assert loop.engine.finished_total == 12
    assert loop.engine.in_flight == 0
    assert consumer.commits[-1] == {TP0: 9, TP1: 3}
    assert loop.engine.committed() == {TP0: 9, TP1: 3}
    assert consumer.polls < MAX_POLLS


async def test_probe_facts_a_standby_member_joined_and_alive_until_the_loop_dies() -> None:
    """An empty assignment still counts as joined; the loop is running while it polls and
    after a requested stop (shutting down is alive), not after it ended by itself."""
    loop = Loop(ScriptedConsumer(set(), []))
    loop.intake.subscribe()
    assert loop.intake.joined is False
    task = asyncio.create_task(loop.intake.run())
    await wait_until(lambda: loop.consumer.polls > 0, timeout_s=DEADLINE_S, what="a poll")
    assert loop.intake.joined is True  # the (empty) assignment came with the first poll
    assert loop.intake.running is True
    loop.intake.stop()
    await asyncio.wait_for(task, DEADLINE_S)
    assert loop.intake.running is True
    ended = Loop(ScriptedConsumer(set(), []))
    await ended.run()  # burst: ends by itself once a poll brings nothing
    assert ended.intake.running is False


async def test_periodic_commits_only_carry_partitions_whose_watermark_advanced() -> None:
    """With a zero commit interval every pass commits, but never the same offset twice."""
    script: list[Step] = [
        ({TP0: _records(TP0, 0, 2)}, set()),
        ({TP1: _records(TP1, 0, 2)}, set()),
    ]
    consumer = ScriptedConsumer({TP0, TP1}, script)
    await Loop(consumer, commit_interval_s=0.0).run()
    committed = [(tp, offset) for commit in consumer.commits for tp, offset in commit.items()]
    assert len(committed) == len(set(committed))
    assert {tp: offset for tp, offset in committed} == {TP0: 2, TP1: 2}


async def test_revoke_drains_commits_and_releases_the_revoked_partition() -> None:
    """On revoke, the partition's in-flight records finish, its watermark is committed, and
    the engine lets it go; the partition kept goes on and is committed at the end."""
    script: list[Step] = [
        ({TP0: _records(TP0, 0, 6), TP1: _records(TP1, 0, 2)}, set()),
        ({TP1: _records(TP1, 2, 2)}, {TP0}),
    ]
    consumer = ScriptedConsumer({TP0, TP1}, script)
    loop = Loop(consumer)
    with capture_logs() as logs:
        await loop.run()
    revoked = [e for e in logs if e["event"] == "intake.revoked"]
    assert revoked == [{"event": "intake.revoked", "log_level": "info", "partitions": [TP0],
                        "drained": True}]  # fmt: skip
    assert consumer.commits[0] == {TP0: 6}  # the revoke's commit: all six drained first
    assert not loop.engine.owns(TP0)
    assert loop.engine.assigned == [TP1]
    assert consumer.commits[-1] == {TP1: 4}
    assert loop.engine.finished_total == 10


class StaticEngine:
    """An engine whose load the test sets directly."""

    def __init__(self) -> None:
        self.assigned = [TP0, TP1]
        self.max_in_flight = 100
        self.room = 10
        self.over_cap: set[TP] = set()
        self.in_flight = 7
        self.offsets: dict[TP, int] = {}
        self.marked: list[Mapping[TP, int]] = []

    def capacity(self) -> int:
        return self.room

    def partitions_over_cap(self) -> set[TP]:
        return self.over_cap

    def committable(self, partitions: set[TP] | None = None) -> dict[TP, int]:
        return dict(self.offsets)

    def mark_committed(self, offsets: Mapping[TP, int]) -> None:
        self.marked.append(offsets)


def _static_intake(consumer: ScriptedConsumer, engine: StaticEngine) -> Intake:
    return Intake(
        consumer=consumer, engine=cast(Engine, engine), topic="in", fetch_max_records=10,
        poll_timeout_ms=10, commit_interval_s=1.0, drain_timeout_s=1.0, board=WaitBoard(),
        metrics=Metrics(),
    )  # fmt: skip


def test_pause_and_resume_are_logged_once_each_with_exact_fields() -> None:
    """A partition over its cap is paused with one exact log line, and resumed with another."""
    consumer, engine = ScriptedConsumer({TP0, TP1}, []), StaticEngine()
    intake = _static_intake(consumer, engine)
    with capture_logs() as logs:
        engine.over_cap = {TP1}
        intake._apply_backpressure()
        intake._apply_backpressure()
        assert consumer.paused == {TP1}
        engine.over_cap = set()
        intake._apply_backpressure()
    assert logs == [
        {"event": "intake.paused", "log_level": "info", "partitions": [TP1],
         "waiting_on_upstream": 0, "in_flight": 7},
        {"event": "intake.resumed", "log_level": "info", "partitions": [TP1], "in_flight": 7},
    ]  # fmt: skip
    assert consumer.paused == set()


def test_a_full_engine_pauses_every_assigned_partition() -> None:
    """At the global cap every assigned partition is paused."""
    consumer, engine = ScriptedConsumer({TP0, TP1}, []), StaticEngine()
    intake = _static_intake(consumer, engine)
    engine.room = 0
    intake._apply_backpressure()
    assert consumer.paused == {TP0, TP1}


def test_after_the_global_cap_intake_resumes_only_when_a_fetch_fits_again() -> None:
    """Paused at the cap, partitions stay paused while a few places free up (a resume for
    each would fetch again what the pause dropped) and resume once a fetch's worth fits."""
    consumer, engine = ScriptedConsumer({TP0, TP1}, []), StaticEngine()
    intake = _static_intake(consumer, engine)  # fetch_max_records 10, max_in_flight 100
    engine.room = 0
    intake._apply_backpressure()
    engine.room = 9
    intake._apply_backpressure()
    assert consumer.paused == {TP0, TP1}
    engine.room = 10
    intake._apply_backpressure()
    assert consumer.paused == set()
    engine.room = 3  # below the resume room, but never at the cap since: keep fetching
    intake._apply_backpressure()
    assert consumer.paused == set()


async def test_a_commit_refused_by_a_rebalance_is_logged_not_raised() -> None:
    """CommitFailed is a warning line and a False result; nothing is marked committed."""
    consumer, engine = ScriptedConsumer({TP0, TP1}, []), StaticEngine()
    engine.offsets = {TP0: 5}
    consumer.fail_commit = True
    intake = _static_intake(consumer, engine)
    with capture_logs() as logs:
        committed = await intake.commit()
    assert committed is False
    assert engine.marked == []
    assert logs == [
        {"event": "intake.commit_failed", "log_level": "warning",
         "error": "CommitFailedError: rebalance in progress", "partitions": 1},
    ]  # fmt: skip
