"""aiokafka's repeated lines rate-limited by the logging filter, and the broker's
reachability told in two events."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Gauge
from structlog.testing import capture_logs

from processor.logs import RepeatFilter
from processor.reachability import Reachability
from tests.unit.fake_time import FakeTime


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_of_an_aiokafka_line_pass_once_a_window_with_the_count_held_back() -> None:
    """The first line of a kind passes, its repeats within the window do not, and the first
    after the window passes carrying how many were held back."""
    time = FakeTime()
    repeats = RepeatFilter(window_s=60, clock=time.clock)
    template = "Unable connect to node with id %s: %s"
    passed = [repeats.filter(_record("aiokafka.conn", template, 1, f"try {i}")) for i in range(50)]
    assert passed == [True] + [False] * 49
    time.advance(60)
    later = _record("aiokafka.conn", template, 1, "again")
    assert repeats.filter(later) is True
    assert later.repeats == 49  # type: ignore[attr-defined]


def test_other_kinds_and_other_loggers_are_not_held_back() -> None:
    """Another template, another level or a logger outside aiokafka is a line of its own."""
    repeats = RepeatFilter(window_s=60, clock=FakeTime().clock)
    assert repeats.filter(_record("aiokafka.client", "Unable to update metadata from %s", 1))
    assert repeats.filter(_record("aiokafka.client", "Unable to update metadata from %s", 1,
                                  level=logging.WARNING))  # fmt: skip
    assert repeats.filter(_record("aiokafka.fetcher", "Failed fetch messages from %s", 1))
    for _ in range(3):
        assert repeats.filter(_record("aiohttp.client", "same line"))
        assert repeats.filter(_record("aiokafkaesque", "same line"))


def test_an_outage_is_one_unreachable_and_one_reachable_event_with_its_duration() -> None:
    """Only the transitions are logged: the first failed probe and the first good one after,
    which says how long the broker was down; the gauge follows every probe."""
    time = FakeTime()
    gauge = Gauge("reachable", "test", registry=CollectorRegistry())
    reach = Reachability("kafka:9092", gauge, clock=time.clock)
    with capture_logs() as logs:
        reach.observe(True)
        for _ in range(5):
            reach.observe(False)
            time.advance(2.0)
        assert gauge._value.get() == 0
        reach.observe(True)
        reach.observe(True)
    assert gauge._value.get() == 1
    assert [e["event"] for e in logs] == ["kafka.unreachable", "kafka.reachable"]
    down, back = logs
    assert (down["address"], down["log_level"]) == ("kafka:9092", "warning")
    assert back == {"event": "kafka.reachable", "log_level": "info", "address": "kafka:9092",
                    "since": down["since"], "down_s": 10.0}  # fmt: skip
