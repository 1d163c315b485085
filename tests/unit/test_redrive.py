"""Which dead letters a redrive takes, and the record it sends back for each (no Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime

from processor.inputs import Record
from processor.redrive import Action, Selection, plan

DLQ_HEADERS = [
    ("traceparent", b"00-abc-01"),
    ("dlq.reason", b"upstream.unavailable"),
    ("dlq.original.topic", b"in"),
    ("dlq.original.partition", b"2"),
    ("dlq.original.offset", b"40"),
    ("dlq.original.timestamp", b"1700000000000"),
    ("dlq.first.failure.time", b"2026-12-04T10:00:00.000+00:00"),
]


def _dead(*extra: tuple[str, bytes], offset: int = 7, key: bytes | None = b"k") -> Record:
    return Record("in.dlq", 1, offset, 1, key, b'{"x":1}', [*DLQ_HEADERS, *extra])


def test_a_first_redrive_sends_the_original_back_without_dlq_headers() -> None:
    """The key, value and original timestamp go back; dlq.* go; the redrive headers come."""
    step = plan(_dead(), to="in", park="in.dlq.parked", max_redrives=3)
    assert step.action is Action.SEND
    assert (step.topic, step.key, step.value) == ("in", b"k", b'{"x":1}')
    assert step.timestamp_ms == 1_700_000_000_000
    assert step.headers == [
        ("traceparent", b"00-abc-01"),
        ("redrive.count", b"1"),
        ("redrive.source", b"in.dlq/1/7"),
        ("redrive.origin", b"in/2/40"),
    ]


def test_a_later_redrive_counts_up_and_keeps_the_first_origin() -> None:
    """The count grows by one and the origin stays the first input's, not the redriven copy's."""
    step = plan(
        _dead(("redrive.count", b"1"), ("redrive.origin", b"in/0/3")),
        to="in", park="p", max_redrives=3,
    )  # fmt: skip
    headers = dict(step.headers)
    assert headers["redrive.count"] == b"2"
    assert headers["redrive.origin"] == b"in/0/3"
    assert [k for k, _ in step.headers].count("redrive.count") == 1


def test_a_record_sent_back_max_times_is_parked_with_its_dead_letter_headers() -> None:
    """At the limit the dead letter goes to the park topic as it is, plus redrive.parked."""
    record = _dead(("redrive.count", b"3"))
    step = plan(record, to="in", park="in.dlq.parked", max_redrives=3)
    assert step.action is Action.PARK
    assert step.topic == "in.dlq.parked"
    assert step.headers[:-1] == list(record.headers)
    assert step.headers[-1] == ("redrive.parked", b"sent back 3 times")


def test_a_dead_letter_without_its_value_is_left_where_it_is() -> None:
    """A fallback dead letter (value omitted) cannot be sent back: it is counted, not sent."""
    step = plan(_dead(("dlq.value.omitted", b"too large")), to="in", park="p", max_redrives=3)
    assert step.action is Action.UNRECOVERABLE


def test_selection_filters_combine() -> None:
    """Reason globs, failure time, offsets and key must all match."""
    record = _dead()
    assert Selection().matches(record)
    assert Selection(reasons=("upstream.*",)).matches(record)
    assert not Selection(reasons=("schema.*", "decode.*")).matches(record)
    assert Selection(since=datetime(2026, 12, 4, 9, tzinfo=UTC)).matches(record)
    assert not Selection(since=datetime(2026, 12, 4, 11, tzinfo=UTC)).matches(record)
    assert not Selection(until=datetime(2026, 12, 4, 10, tzinfo=UTC)).matches(record)
    assert Selection(start_offset=7, end_offset=7).matches(record)
    assert not Selection(end_offset=6).matches(record)
    assert not Selection(key=b"other").matches(record)
    assert not Selection(since=datetime(2026, 1, 1, tzinfo=UTC)).matches(_dead_without_time())


def _dead_without_time() -> Record:
    headers = [(k, v) for k, v in DLQ_HEADERS if k != "dlq.first.failure.time"]
    return Record("in.dlq", 0, 1, 1, None, b"{}", headers)


def test_each_selection_keeps_its_own_progress() -> None:
    """Different selections get different consumer groups; the same one resumes its own."""
    assert Selection(reasons=("a",)).fingerprint() == Selection(reasons=("a",)).fingerprint()
    assert Selection(reasons=("a",)).fingerprint() != Selection(reasons=("b",)).fingerprint()
