"""Tests of the outcome payloads: the document, the record as a CloudEvent, kept headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from processor.payloads import MAX_REASONS_HEADER_BYTES, encode, propagated
from schemas.outcomes import (
    CheckResult,
    CheckStatus,
    InputCoordinates,
    OutcomeDocument,
    ProcessorInfo,
    Reason,
    ReasonCode,
    Timing,
    Verdict,
)

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ATTRIBUTES = {"specversion": "1.0", "id": "rec-1", "type": "customer.v1", "source": "/crm"}
INPUT_HEADERS = [
    ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("tenant", b"acme"),
    ("ce_id", b"rec-1"),
    ("Content-Type", b"application/json"),
    ("record.verdict", b"forged"),
    ("dlq.reason", b"old"),
    ("tenant", b"second value kept too"),
]


def _doc(*, invalid: bool, reasons: list[Reason] | None = None) -> OutcomeDocument:
    data = {"email": " Alice@Example.com "}
    return OutcomeDocument(
        outcome="invalid" if invalid else "valid",
        verdict=Verdict.INVALID if invalid else Verdict.VALID,
        record_id="rec-1",
        record_type="customer.v1",
        source="/crm",
        reasons=reasons or [],
        checks=[
            CheckResult(
                name="email_ok",
                upstream="email",
                status=CheckStatus.FAILED if invalid else CheckStatus.PASSED,
                required=True,
                attempts=1,
                latency_ms=1.0,
            )
        ],
        event={**ATTRIBUTES, "data": data} if invalid else dict(ATTRIBUTES),
        normalized_data=None if invalid else {"email": "alice@example.com"},
        input=InputCoordinates(topic="records.in", partition=2, offset=41),
        processor=ProcessorInfo(name="record-processor", version="1", instance="h-1"),
        timing=Timing(received_at=WHEN, completed_at=WHEN, duration_ms=1.0),
    )


def test_input_headers_are_kept_except_those_the_outcome_replaces() -> None:
    """Trace and tenant headers survive in order; content-type, ce_*, record.*, dlq.* do not."""
    assert propagated(INPUT_HEADERS) == [
        INPUT_HEADERS[0],
        INPUT_HEADERS[1],
        INPUT_HEADERS[6],
    ]


def test_a_valid_record_payload_is_the_cloudevent_with_normalised_data() -> None:
    """The value is the event's attributes and the normalised data; nothing else."""
    value, headers = encode("record", _doc(invalid=False), INPUT_HEADERS)
    assert json.loads(value) == {
        **ATTRIBUTES,
        "datacontenttype": "application/json",
        "data": {"email": "alice@example.com"},
    }
    assert headers == [
        *propagated(INPUT_HEADERS),
        ("content-type", b"application/cloudevents+json"),
        ("record.id", b"rec-1"),
        ("record.verdict", b"valid"),
        ("record.checks", b'{"email_ok":"passed"}'),
        ("record.input", b"records.in/2/41"),
    ]


def test_an_invalid_record_payload_keeps_the_data_as_received_and_says_why() -> None:
    """An invalid record has no normalised data: the received data, and reasons in a header."""
    reason = Reason(code=ReasonCode.SCHEMA_INVALID, message="not an e-mail", field="email")
    value, headers = encode("record", _doc(invalid=True, reasons=[reason]), [])
    assert json.loads(value)["data"] == {"email": " Alice@Example.com "}
    assert json.loads(dict(headers)["record.reasons"]) == [
        {"code": "schema.invalid", "message": "not an e-mail", "field": "email"}
    ]
    assert dict(headers)["record.verdict"] == b"invalid"


def test_the_reasons_header_stays_valid_json_within_its_bound() -> None:
    """Too many long reasons: trailing ones are dropped, never cut mid-JSON."""
    reasons = [
        Reason(code=ReasonCode.SCHEMA_INVALID, message="m" * 1000, field=f"lines.{i}.sku")
        for i in range(50)
    ]
    _, headers = encode("record", _doc(invalid=True, reasons=reasons), [])
    raw = dict(headers)["record.reasons"]
    assert len(raw) <= MAX_REASONS_HEADER_BYTES
    kept = json.loads(raw)
    assert 1 <= len(kept) < 50
    assert [r["field"] for r in kept] == [f"lines.{i}.sku" for i in range(len(kept))]
