"""The watchdog's decisions, with a fake engine, clock and memory reading."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from processor.engine import Engine
from processor.waits import CURRENT_PARTITION, ActivityBoard
from processor.watchdog import Watchdog


class FakeEngine:
    """Just what the watchdog reads and writes."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.last_progress_at = 0.0
        self.memory_pressure = False

    def oldest_pending(self) -> tuple[tuple[str, int], int] | None:
        return (("in", 3), 42) if self.in_flight else None


def _dog(engine: FakeEngine, now: list[float], rss: list[float], **kw: Any) -> Watchdog:
    fake: Any = engine  # structurally an Engine for what the watchdog uses
    typed: Engine = fake
    return Watchdog(
        typed,
        kw.pop("activity", ActivityBoard()),
        kw.pop("stall", 5.0),
        kw.pop("budget", None),
        rss_mib=lambda: rss[0],
        clock=lambda: now[0],
    )


def test_pending_work_without_progress_past_the_timeout_is_a_stall_logged_once() -> None:
    """In-flight records and no finish for the stall timeout mark it stalled, with one log line."""
    engine, now, rss = FakeEngine(), [0.0], [50.0]
    activity = ActivityBoard()
    dog = _dog(engine, now, rss, activity=activity)
    engine.in_flight = 3
    now[0] = 4.9
    dog.check()
    assert dog.stalled is False
    token = CURRENT_PARTITION.set(("in", 3))
    doing = activity.begin("check email_deliverable (upstream email)")
    try:
        with capture_logs() as logs:
            now[0] = 5.0
            dog.check()
            dog.check()
    finally:
        activity.end(doing)
        CURRENT_PARTITION.reset(token)
    assert dog.stalled is True
    assert len(logs) == 1
    event = logs[0]
    assert event["event"] == "engine.stalled"
    assert (event["topic"], event["partition"], event["offset"]) == ("in", 3, 42)
    assert event["stuck_on"] == "check email_deliverable (upstream email)"
    assert event["in_flight"] == 3


def test_progress_or_an_empty_engine_ends_the_stall() -> None:
    """A finished record after a stall clears it and says so."""
    engine, now, rss = FakeEngine(), [10.0], [50.0]
    dog = _dog(engine, now, rss)
    engine.in_flight = 1
    dog.check()
    assert dog.stalled is True
    engine.last_progress_at = 10.0
    with capture_logs() as logs:
        dog.check()
    assert dog.stalled is False
    assert [e["event"] for e in logs] == ["engine.unstalled"]


def test_idle_engine_is_never_stalled() -> None:
    """Nothing in flight is not a stall, however long nothing finished."""
    engine, now, rss = FakeEngine(), [1_000.0], [50.0]
    dog = _dog(engine, now, rss)
    dog.check()
    assert dog.stalled is False


def test_memory_over_budget_pauses_intake_until_back_under_ninety_percent() -> None:
    """RSS above the budget sets memory pressure; it clears only below 90% of the budget."""
    engine, now, rss = FakeEngine(), [0.0], [250.0]
    dog = _dog(engine, now, rss, budget=200)
    dog.check()
    assert engine.memory_pressure is True
    rss[0] = 185.0
    dog.check()
    assert engine.memory_pressure is True
    rss[0] = 179.0
    dog.check()
    assert engine.memory_pressure is False
    assert dog.peak_rss_mib == 250.0


def test_without_a_budget_memory_never_pauses_intake() -> None:
    """No ``max_rss_mib``: the peak is tracked, intake never paused for memory."""
    engine, now, rss = FakeEngine(), [0.0], [10_000.0]
    dog = _dog(engine, now, rss)
    dog.check()
    assert engine.memory_pressure is False
    assert dog.peak_rss_mib == 10_000.0
