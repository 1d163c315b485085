"""Tests of the outcome publisher: topics, dead-letter headers, JSON documents."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from processor.config import OutcomesConfig, TopicsConfig
from processor.inputs import Record
from processor.outcomes import (
    FALLBACK_KEPT_BYTES,
    MAX_ERROR_MESSAGE_CHARS,
    DeadLetter,
    Invalid,
    OutcomePublisher,
    Valid,
    fallback_dead_letter,
)
from schemas.outcomes import (
    DLQ_HEADERS,
    InputCoordinates,
    OutcomeDocument,
    ProcessorInfo,
    Reason,
    ReasonCode,
    Timing,
    Verdict,
)

TOPICS = TopicsConfig(input="in", valid="out.valid", invalid="out.invalid", dead_letter="out.dlq")
PROCESSOR_ID = "record-processor/host-1"
FIRST_FAILURE = datetime(2025, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
ORIGINAL_HEADERS = [("traceparent", b"00-abc-01"), ("ce_id", b"x\x00y"), ("traceparent", b"2")]


@dataclass
class Sent:
    """One recorded ``send`` call."""

    topic: str
    value: bytes | None
    key: bytes | None
    partition: int | None
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]]


class FakeProducer:
    """Records each send and returns an already-acknowledged future."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        self.sent.append(Sent(topic, value, key, partition, timestamp_ms, list(headers or [])))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(("metadata", len(self.sent)))
        return future


def _record(headers: list[tuple[str, bytes]] | None = None) -> Record:
    return Record(
        topic="in",
        partition=3,
        offset=1234,
        timestamp=1_700_000_000_123,
        key=b"\x00key\xff",
        value=b"\xde\xad\xbe\xef not even json",
        headers=ORIGINAL_HEADERS if headers is None else headers,
    )


def _dead_letter(message: str = "bad bytes") -> DeadLetter:
    return DeadLetter(
        reason=ReasonCode.DECODE_FAILED,
        error_class="DecodeError",
        message=message,
        attempts=2,
        first_failure_at=FIRST_FAILURE,
    )


def _document(verdict: Verdict) -> OutcomeDocument:
    invalid = verdict is Verdict.INVALID
    return OutcomeDocument(
        outcome="invalid" if invalid else "valid",
        verdict=verdict,
        record_id="rec-1",
        record_type="customer.v1",
        source="/crm",
        reasons=[Reason(code=ReasonCode.SCHEMA_INVALID, message="bad", field="email")]
        if invalid
        else [],
        event={"id": "rec-1", "data": {"email": "ÄÖ@example.com"}},
        normalized_data=None if invalid else {"email": "äö@example.com"},
        input=InputCoordinates(topic="in", partition=3, offset=1234, key="key"),
        processor=ProcessorInfo(name="record-processor", version="1", instance="host-1"),
        timing=Timing(received_at=FIRST_FAILURE, completed_at=FIRST_FAILURE, duration_ms=1.25),
    )


async def _publish(
    record: Record, outcome: Valid | Invalid | DeadLetter, payloads: OutcomesConfig | None = None
) -> Sent:
    producer = FakeProducer()
    publisher = OutcomePublisher(producer, TOPICS, PROCESSOR_ID, payloads)
    ack = await publisher.publish(record, outcome)
    assert await asyncio.wait_for(ack, 1.0) == ("metadata", 1)
    [sent] = producer.sent
    return sent


async def test_a_dead_letter_republishes_the_input_byte_for_byte() -> None:
    """The dead-letter record keeps the input's key, value and timestamp exactly."""
    record = _record()
    sent = await _publish(record, _dead_letter())
    assert sent.topic == "out.dlq"
    assert sent.value == record.value
    assert sent.key == record.key
    assert sent.timestamp_ms == record.timestamp


async def test_a_dead_letter_keeps_the_original_headers_in_order_then_adds_its_set() -> None:
    """Original headers come first, in order and with duplicates, then one of each dlq.* header."""
    sent = await _publish(_record(), _dead_letter())
    n = len(ORIGINAL_HEADERS)
    assert sent.headers[:n] == ORIGINAL_HEADERS
    assert [name for name, _ in sent.headers[n:]] == list(DLQ_HEADERS)


async def test_the_dead_letter_headers_say_why_and_where_from() -> None:
    """The dlq.* headers carry reason, error, coordinates, attempts, time and processor."""
    sent = await _publish(_record(), _dead_letter())
    added = {name: raw.decode() for name, raw in sent.headers if name.startswith("dlq.")}
    assert added == {
        "dlq.reason": "decode.failed",
        "dlq.error.class": "DecodeError",
        "dlq.error.message": "bad bytes",
        "dlq.original.topic": "in",
        "dlq.original.partition": "3",
        "dlq.original.offset": "1234",
        "dlq.original.timestamp": "1700000000123",
        "dlq.attempts": "2",
        "dlq.first.failure.time": "2025-01-02T03:04:05.678+00:00",
        "dlq.processor": PROCESSOR_ID,
    }


async def test_re_dead_lettering_replaces_the_dlq_headers_instead_of_adding() -> None:
    """A dead letter of a dead letter has exactly one of each dlq.* header, and no stale ones."""
    first = await _publish(_record(), _dead_letter("first failure"))
    replayed = Record("in", 0, 9, 1, b"k", first.value, [*first.headers, ("dlq.stale", b"old")])
    second = await _publish(replayed, _dead_letter("second failure"))
    names = [name for name, _ in second.headers]
    assert sorted(n for n in names if n.startswith("dlq.")) == sorted(DLQ_HEADERS)
    assert "dlq.stale" not in names
    assert dict(second.headers)["dlq.error.message"] == b"second failure"
    assert dict(second.headers)["dlq.original.offset"] == b"9"
    assert second.headers[: len(ORIGINAL_HEADERS)] == ORIGINAL_HEADERS


async def test_the_dead_letter_error_message_is_bounded() -> None:
    """A long error message is cut to MAX_ERROR_MESSAGE_CHARS characters."""
    long_message = "x" * 10 + "é" * (MAX_ERROR_MESSAGE_CHARS * 4)
    sent = await _publish(_record(), _dead_letter(long_message))
    message = dict(sent.headers)["dlq.error.message"].decode()
    assert len(message) == MAX_ERROR_MESSAGE_CHARS
    assert long_message.startswith(message)


@pytest.mark.parametrize(
    ("outcome", "topic"),
    [
        (Valid(_document(Verdict.VALID)), "out.valid"),
        (Valid(_document(Verdict.VALID_UNVERIFIED)), "out.valid"),
        (Invalid(_document(Verdict.INVALID)), "out.invalid"),
    ],
    ids=["valid", "valid-unverified", "invalid"],
)
async def test_valid_and_invalid_outcomes_are_published_as_json_documents(
    outcome: Valid | Invalid, topic: str
) -> None:
    """Valid and Invalid go to their topics, keyed like the input, as round-tripping JSON,
    with the input's headers (less its binary-mode ``ce_*`` attributes) then ours."""
    record = _record()
    sent = await _publish(record, outcome)
    assert sent.topic == topic
    assert sent.key == record.key
    assert sent.value is not None
    assert OutcomeDocument.model_validate_json(sent.value) == outcome.document
    assert sent.headers == [
        ("traceparent", b"00-abc-01"),
        ("traceparent", b"2"),
        ("content-type", b"application/json"),
        ("record.id", b"rec-1"),
        ("record.verdict", outcome.document.verdict.value.encode()),
    ]


def test_topic_for_routes_each_outcome_kind() -> None:
    """Each outcome kind maps to its configured topic."""
    publisher = OutcomePublisher(FakeProducer(), TOPICS, PROCESSOR_ID)
    assert publisher.topic_for(Valid(_document(Verdict.VALID))) == "out.valid"
    assert publisher.topic_for(Invalid(_document(Verdict.INVALID))) == "out.invalid"
    assert publisher.topic_for(_dead_letter()) == "out.dlq"


@pytest.mark.parametrize(
    ("outcome", "payloads"),
    [
        (Valid(_document(Verdict.VALID)), OutcomesConfig(valid_payload="record")),
        (Invalid(_document(Verdict.INVALID)), OutcomesConfig(invalid_payload="record")),
    ],
    ids=["valid", "invalid"],
)
async def test_the_record_payload_is_chosen_per_topic(
    outcome: Valid | Invalid, payloads: OutcomesConfig
) -> None:
    """A topic set to ``record`` carries the CloudEvent; the other keeps the document."""
    sent = await _publish(_record(), outcome, payloads)
    assert dict(sent.headers)["content-type"] == b"application/cloudevents+json"
    other = (
        Invalid(_document(Verdict.INVALID))
        if isinstance(outcome, Valid)
        else Valid(_document(Verdict.VALID))
    )
    assert dict((await _publish(_record(), other, payloads)).headers)["content-type"] == (
        b"application/json"
    )


@pytest.mark.parametrize(
    ("value", "outcome", "reason", "size"),
    [
        (None, "dead-letter", b"decode.failed", b"null"),
        (b"x" * 100, "dead-letter", b"decode.failed", b"100"),
        (b"{}", "valid", b"decode.failed", b"2"),
    ],
    ids=["null-value", "refused-dead-letter", "unencodable-verdict"],
)
def test_a_fallback_dead_letter_leaves_the_value_out_and_says_why(
    value: bytes | None, outcome: str, reason: bytes, size: bytes
) -> None:
    """The fallback's value is empty (never null), its headers say why and how large the value
    was, and it keeps the coordinates, the key and small input headers."""
    record = Record("in", 3, 1234, 1, b"key", value, ORIGINAL_HEADERS)
    original = _dead_letter() if outcome == "dead-letter" else Valid(_document(Verdict.VALID))
    key, out, headers = fallback_dead_letter(record, original, ValueError("nope"), PROCESSOR_ID)
    named = dict(headers)
    assert (key, out) == (b"key", b"")
    assert named["dlq.reason"] == reason
    assert named["dlq.value.bytes"] == size
    assert named["dlq.value.omitted"] == b"ValueError: nope"
    assert named["dlq.original.offset"] == b"1234"
    assert headers[: len(ORIGINAL_HEADERS)] == ORIGINAL_HEADERS


def test_a_fallback_drops_input_headers_too_large_to_be_sure_to_fit() -> None:
    """Input headers over the fallback's bound are left out, and counted."""
    big = [("blob", b"b" * (FALLBACK_KEPT_BYTES + 1))]
    record = Record("in", 0, 7, 1, None, None, big)
    key, _, headers = fallback_dead_letter(record, _dead_letter(), ValueError("x"), PROCESSOR_ID)
    assert key is None
    assert "blob" not in dict(headers)
    assert dict(headers)["dlq.headers.omitted"] == b"1"


class RefusingProducer(FakeProducer):
    """Accepts every send; the broker then refuses the acknowledgements of the first
    ``refusals`` sends to ``refuse_topic`` with a per-record error (or ``error``)."""

    def __init__(self, refuse_topic: str, refusals: int, error: Exception | None = None) -> None:
        super().__init__()
        self.refuse_topic, self.refusals = refuse_topic, refusals
        self.error = error or OverflowError("record too large for its topic")

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        future = await super().send(topic, *args, **kwargs)
        if topic == self.refuse_topic and self.refusals > 0:
            self.refusals -= 1
            refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            refused.set_exception(self.error)
            return refused
        return future


def _per_record(exc: BaseException) -> bool:
    return isinstance(exc, OverflowError)


async def test_a_record_the_broker_refuses_once_is_sent_again_on_its_own() -> None:
    """A batch-mate may have been the one too large: the outcome is sent once more."""
    producer = RefusingProducer(TOPICS.valid, refusals=1)
    publisher = OutcomePublisher(producer, TOPICS, PROCESSOR_ID, rejected=_per_record)
    ack = await publisher.publish(_record(), Valid(_document(Verdict.VALID)))
    assert await asyncio.wait_for(ack, 5) == ("metadata", 2)
    assert [s.topic for s in producer.sent] == [TOPICS.valid, TOPICS.valid]


async def test_a_record_the_broker_refuses_twice_gets_a_fallback_dead_letter() -> None:
    """Refused again: the acknowledgement is the fallback dead letter's, value left out."""
    producer = RefusingProducer(TOPICS.valid, refusals=2)
    publisher = OutcomePublisher(producer, TOPICS, PROCESSOR_ID, rejected=_per_record)
    ack = await publisher.publish(_record(), Valid(_document(Verdict.VALID)))
    assert await asyncio.wait_for(ack, 5) == ("metadata", 3)
    fallback = producer.sent[-1]
    assert fallback.topic == TOPICS.dead_letter
    assert fallback.value == b""
    assert dict(fallback.headers)["dlq.reason"] == b"decode.failed"
    assert b"record too large" in dict(fallback.headers)["dlq.value.omitted"]


async def test_a_broker_failure_in_the_acknowledgement_is_not_a_record_refusal() -> None:
    """An error that is not about the record fails the acknowledgement as it is."""
    producer = RefusingProducer(TOPICS.valid, refusals=1, error=ConnectionError("gone"))
    publisher = OutcomePublisher(producer, TOPICS, PROCESSOR_ID, rejected=_per_record)
    ack = await publisher.publish(_record(), Valid(_document(Verdict.VALID)))
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(ack, 5)
    assert len(producer.sent) == 1


async def test_a_refused_fallback_fails_the_acknowledgement() -> None:
    """When the dead-letter topic refuses the fallback too, the caller's ack fails (fatal)."""
    producer = RefusingProducer(TOPICS.valid, refusals=2)
    publisher = OutcomePublisher(producer, TOPICS, PROCESSOR_ID, rejected=lambda _e: True)

    async def refuse_all(topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        refused.set_exception(OverflowError(f"{topic} refuses"))
        return refused

    producer.send = refuse_all  # type: ignore[method-assign]
    ack = await publisher.publish(_record(), Valid(_document(Verdict.VALID)))
    with pytest.raises(OverflowError, match=r"out\.dlq refuses"):
        await asyncio.wait_for(ack, 5)


async def test_publish_then_calls_back_once_with_the_acknowledgement_that_settled_it() -> None:
    """The engine's way: no future of the publisher's own; after a refusal, the callback
    sees the acknowledgement of the outcome sent again, and only that one."""
    producer = RefusingProducer(TOPICS.valid, refusals=1)
    publisher = OutcomePublisher(producer, TOPICS, PROCESSOR_ID, rejected=_per_record)
    seen: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
    await publisher.publish_then(_record(), Valid(_document(Verdict.VALID)), seen.put_nowait)
    settled = await asyncio.wait_for(seen.get(), 5)
    assert settled.result() == ("metadata", 2)
    await publisher.publish_then(_record(), Valid(_document(Verdict.VALID)), seen.put_nowait)
    assert (await asyncio.wait_for(seen.get(), 5)).result() == ("metadata", 3)
    assert seen.empty()
