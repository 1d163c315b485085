"""The intake's state-change log lines and its reaction to a failed commit (fake consumer)."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError
from structlog.testing import capture_logs

from processor.consumer import Intake
from processor.engine import Engine
from processor.metrics import Metrics
from processor.waits import WaitBoard

TP0, TP1 = ("in", 0), ("in", 1)


class FakeConsumer:
    """Records pause/resume/commit calls; commit fails when told to."""

    def __init__(self) -> None:
        self.paused: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, Any]] = []
        self.fail_commit = False

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(*TP0), TopicPartition(*TP1)}

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        if self.fail_commit:
            raise CommitFailedError("rebalance in progress")
        self.commits.append(offsets)


class FakeEngine:
    """An engine whose load the test sets directly."""

    def __init__(self) -> None:
        self.assigned = [TP0, TP1]
        self.full = False
        self.over_cap: set[tuple[str, int]] = set()
        self.in_flight = 7
        self.states: dict[tuple[str, int], Any] = {}

    def capacity(self) -> int:
        return 0 if self.full else 10

    def partitions_over_cap(self) -> set[tuple[str, int]]:
        return self.over_cap

    def offsets(self, tp: tuple[str, int]) -> Any:
        return self.states.get(tp)


def _intake(consumer: FakeConsumer, engine: FakeEngine, board: WaitBoard) -> Intake:
    fake_consumer: Any = consumer
    fake_engine: Any = engine
    typed_engine: Engine = fake_engine
    return Intake(
        consumer=fake_consumer, engine=typed_engine, topic="in", fetch_max_records=10,
        poll_timeout_ms=10, commit_interval_s=1.0, drain_timeout_s=1.0, board=board,
        metrics=Metrics(),
    )  # fmt: skip


def test_pause_and_resume_are_logged_once_each_with_exact_fields() -> None:
    """A partition over its cap is paused with one exact log line, and resumed with another."""
    consumer, engine = FakeConsumer(), FakeEngine()
    intake = _intake(consumer, engine, WaitBoard())
    with capture_logs() as logs:
        engine.over_cap = {TP1}
        intake._apply_backpressure()
        intake._apply_backpressure()
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
    consumer, engine = FakeConsumer(), FakeEngine()
    intake = _intake(consumer, engine, WaitBoard())
    engine.full = True
    intake._apply_backpressure()
    assert consumer.paused == {TopicPartition(*TP0), TopicPartition(*TP1)}


async def test_a_commit_refused_by_a_rebalance_is_logged_not_raised() -> None:
    """CommitFailedError is a warning line and a False result; the offset stays uncommitted."""

    class State:
        committed = None

        def to_commit(self) -> int:
            return 5

    consumer, engine = FakeConsumer(), FakeEngine()
    engine.states = {TP0: State()}
    consumer.fail_commit = True
    intake = _intake(consumer, engine, WaitBoard())
    with capture_logs() as logs:
        committed = await intake.commit()
    assert committed is False
    assert engine.states[TP0].committed is None
    assert logs == [
        {"event": "intake.commit_failed", "log_level": "warning",
         "error": "CommitFailedError", "partitions": 1},
    ]  # fmt: skip
