"""The status module: readiness from its three conditions, lag from what the engine last
committed, and outcome counts by topic and reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from processor.config import EndpointConfig
from processor.engine import TP, Engine
from processor.metrics import Metrics
from processor.outcomes import DeadLetter, OutcomePublisher
from processor.pipeline import Pipeline
from processor.status import OutcomeCounts, Status
from processor.waits import ActivityBoard
from processor.watchdog import Watchdog
from schemas.outcomes import ReasonCode

TP0: TP = ("in", 0)


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
    metrics, probe = Metrics(), FakeProbe()
    counts = OutcomeCounts(metrics)
    engine = Engine(
        pipeline=cast(Pipeline, None), publisher=cast(OutcomePublisher, None), ordering="key",
        max_concurrency=1, max_in_flight=10, max_in_flight_per_partition=10,
    )  # fmt: skip
    watchdog = Watchdog(engine, ActivityBoard(), stall_timeout_s=60, max_rss_mib=None)
    status = Status(
        instance_id="i-1", upstreams=[], config=EndpointConfig(), metrics=metrics,
        counts=counts, engine=engine, watchdog=watchdog, probe=probe,
    )  # fmt: skip
    return status, engine, probe, counts, metrics


async def test_ready_needs_an_assignment_and_a_reachable_broker() -> None:
    """Not ready before a refresh or without partitions; ready once both hold; not when the
    broker stops answering."""
    status, engine, probe, _, _ = _status()
    assert status.readiness()["ready"] is False
    await status.refresh()
    assert status.readiness() == {"ready": False, "partitions_assigned": False,
                                  "broker_reachable": True, "not_stalled": True}  # fmt: skip
    engine.assign([TP0])
    await status.refresh()
    assert status.ready is True
    probe.up = False
    await status.refresh()
    assert status.ready is False


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
