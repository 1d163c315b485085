"""The status module: liveness from the intake loop, readiness from its three conditions,
lag from what the engine last committed, and outcome counts by topic and reason."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import cast

from processor.config import EndpointConfig
from processor.engine import TP, Engine
from processor.metrics import Metrics
from processor.outcomes import DeadLetter, OutcomePublisher
from processor.pipeline import Pipeline
from processor.status import LIVENESS_STUCK_S, OutcomeCounts, Status
from processor.waits import ActivityBoard
from processor.watchdog import Watchdog
from schemas.outcomes import ReasonCode

TP0: TP = ("in", 0)


class FakeIntake:
    """The intake loop's probe facts, set by the test."""

    def __init__(self) -> None:
        self.running = True
        self.joined = False
        self.busy_since: float | None = None


class FakeProbe:
    """A broker that answers as the test says, and records the offsets it was asked about."""

    def __init__(self) -> None:
        self.up = True
        self.asked: list[dict[TP, int | None]] = []

    async def reachable(self, timeout_s: float) -> bool:
        return self.up

    async def lag(self, committed: Mapping[TP, int | None], timeout_s: float) -> dict[TP, int]:
        self.asked.append(dict(committed))
        return {tp: 100 - (offset or 0) for tp, offset in committed.items()}


def _status() -> tuple[Status, Engine, FakeProbe, OutcomeCounts, Metrics]:
    status, engine, probe, counts, metrics, _ = _status_with_intake()
    return status, engine, probe, counts, metrics


def _status_with_intake() -> tuple[Status, Engine, FakeProbe, OutcomeCounts, Metrics, FakeIntake]:
    metrics, probe, intake = Metrics(), FakeProbe(), FakeIntake()
    counts = OutcomeCounts(metrics)
    engine = Engine(
        pipeline=cast(Pipeline, None), publisher=cast(OutcomePublisher, None), ordering="key",
        max_concurrency=1, max_in_flight=10, max_in_flight_per_partition=10,
    )  # fmt: skip
    watchdog = Watchdog(engine, ActivityBoard(), stall_timeout_s=60, max_rss_mib=None)
    status = Status(
        instance_id="i-1", upstreams=[], config=EndpointConfig(), metrics=metrics,
        counts=counts, engine=engine, watchdog=watchdog, probe=probe, intake=intake,
    )  # fmt: skip
    return status, engine, probe, counts, metrics, intake


async def test_ready_needs_a_check_the_group_and_a_reachable_broker() -> None:
    """Not ready before a first broker check or before joining the group; ready once both
    hold, with no partition (a standby member); not when the broker stops answering."""
    status, _, probe, _, _, intake = _status_with_intake()
    assert status.readiness()["ready"] is False
    await status.refresh()
    assert status.readiness() == {"ready": False, "started": True, "in_group": False,
                                  "broker_reachable": True}  # fmt: skip
    intake.joined = True
    assert status.ready is True
    probe.up = False
    await status.refresh()
    assert status.ready is False


async def test_a_stall_shows_in_status_but_keeps_readiness_and_liveness() -> None:
    """A stalled engine (an upstream outage) is reported in /status, not by a probe."""
    status, _, _, _, _, intake = _status_with_intake()
    intake.joined = True
    await status.refresh()
    status._watchdog.stalled = True  # what the watchdog sets after stall_timeout_s
    assert status.ready is True
    assert status.liveness()["live"] is True
    assert status.status()["stalled"] is True


async def test_liveness_follows_the_intake_loop_not_the_broker() -> None:
    """Live while the intake loop runs (polling counts, however long); not live once it
    ended or when it has been busy outside its poll past the bound."""
    status, _, probe, _, _, intake = _status_with_intake()
    probe.up = False
    await status.refresh()
    assert status.liveness()["live"] is True
    intake.busy_since = time.monotonic() - LIVENESS_STUCK_S - 1
    assert status.liveness() == {"live": False, "intake_running": True,
                                 "intake_not_stuck": False}  # fmt: skip
    intake.busy_since, intake.running = None, False
    assert status.liveness()["live"] is False


async def test_lag_is_computed_from_the_offsets_the_engine_marked_committed() -> None:
    """The poller asks the broker about the engine's committed offsets and exports the lag."""
    status, engine, probe, _, metrics = _status()
    engine.assign([TP0])
    engine.mark_committed({TP0: 40})
    await status.refresh()
    assert probe.asked == [{TP0: 40}]
    assert status.status()["lag"] == {"in-0": 60}
    sample = metrics.registry.get_sample_value(
        "processor_consumer_lag", {"topic": "in", "partition": "0"}
    )
    assert sample == 60


def test_outcomes_are_counted_by_topic_and_reason() -> None:
    """Each outcome adds one to its `<topic>:<reason>` count and to the outcome metric."""
    status, _, _, counts, metrics = _status()
    dead = DeadLetter(ReasonCode.DECODE_FAILED, "DecodeError", "bad bytes")
    counts.record(dead, 0.01)
    counts.record(dead, 0.02)
    assert status.status()["outcomes_total"] == {"dead-letter:decode.failed": 2}
    labels = {"topic": "dead-letter", "reason": "decode.failed"}
    assert metrics.registry.get_sample_value("processor_outcomes_total", labels) == 2
