"""Tests of decoding input records into CloudEvents, in structured and binary mode."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from processor.decode import decode
from processor.errors import DecodeError, EnvelopeError, RecordError, RecordTooLarge
from processor.inputs import Record
from schemas.outcomes import ReasonCode

LIMIT = 1_024
EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "rec-1",
    "source": "/crm/eu",
    "type": "customer.v1",
    "datacontenttype": "application/json",
    "data": {"company_name": "Acme GmbH", "email": "ops@acme.example", "country": "DE"},
}
BINARY_HEADERS: list[tuple[str, bytes]] = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"rec-2"),
    ("ce_source", b"/crm/eu"),
    ("ce_type", b"customer.v1"),
    ("content-type", b"application/json"),
]


def _record(value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> Record:
    return Record(
        topic="records.in",
        partition=0,
        offset=7,
        timestamp=1_700_000_000_000,
        key=b"k",
        value=value,
        headers=headers,
    )


def test_structured_mode_decodes_the_whole_event_from_the_value() -> None:
    """A JSON CloudEvent in the value becomes the event, kept as received."""
    decoded = decode(_record(json.dumps(EVENT).encode()), LIMIT)
    assert decoded.binary_mode is False
    assert decoded.event.id == "rec-1"
    assert decoded.event.type == "customer.v1"
    assert decoded.event.data == EVENT["data"]
    assert decoded.as_received == EVENT


def test_binary_mode_reads_attributes_from_ce_headers_and_data_from_the_value() -> None:
    """With ce_* headers the attributes come from headers and the value is the data."""
    data = {"company_name": "Acme GmbH"}
    decoded = decode(_record(json.dumps(data).encode(), BINARY_HEADERS), LIMIT)
    assert decoded.binary_mode is True
    assert decoded.event.id == "rec-2"
    assert decoded.event.source == "/crm/eu"
    assert decoded.event.data == data
    assert decoded.event.datacontenttype == "application/json"
    assert decoded.as_received["data"] == data


def test_binary_mode_header_names_are_case_insensitive() -> None:
    """Header names are matched without regard to case (CE_ID is ce_id)."""
    headers = [(name.upper(), raw) for name, raw in BINARY_HEADERS]
    decoded = decode(_record(b"{}", headers), LIMIT)
    assert decoded.binary_mode is True
    assert decoded.event.id == "rec-2"


def test_oversize_value_is_rejected_before_it_is_parsed() -> None:
    """A value over the limit is RecordTooLarge even when it would not decode at all."""
    with pytest.raises(RecordTooLarge) as caught:
        decode(_record(b"\xff" * (LIMIT + 1)), LIMIT)
    assert caught.value.reason is ReasonCode.RECORD_TOO_LARGE
    assert str(LIMIT + 1) in str(caught.value)


def test_a_value_of_exactly_the_limit_is_accepted() -> None:
    """The limit is inclusive: a value of exactly max_record_bytes is decoded."""
    raw = json.dumps(EVENT).encode()
    decoded = decode(_record(raw), len(raw))
    assert decoded.event.id == "rec-1"


@pytest.mark.parametrize(
    ("value", "headers", "error", "reason", "message"),
    [
        (b"\xff\xfe{}", (), DecodeError, ReasonCode.DECODE_FAILED, "not UTF-8"),
        (b"{not json", (), DecodeError, ReasonCode.DECODE_FAILED, "not JSON"),
        (b"[1, 2]", (), DecodeError, ReasonCode.DECODE_FAILED, "JSON list"),
        (b'"text"', (), DecodeError, ReasonCode.DECODE_FAILED, "JSON str"),
        (None, (), DecodeError, ReasonCode.DECODE_FAILED, "tombstone"),
        (
            b"<xml/>",
            [*BINARY_HEADERS[:-1], ("content-type", b"application/xml")],
            DecodeError,
            ReasonCode.DECODE_FAILED,
            "application/xml",
        ),
        (
            b"{}",
            [*BINARY_HEADERS, ("ce_subject", b"\xc3\x28")],
            DecodeError,
            ReasonCode.DECODE_FAILED,
            "ce_subject",
        ),
        (
            b"not json",
            BINARY_HEADERS,
            DecodeError,
            ReasonCode.DECODE_FAILED,
            "not JSON",
        ),
        (
            json.dumps({k: v for k, v in EVENT.items() if k != "source"}).encode(),
            (),
            EnvelopeError,
            ReasonCode.ENVELOPE_INVALID,
            "source",
        ),
        (
            json.dumps({**EVENT, "specversion": "0.3"}).encode(),
            (),
            EnvelopeError,
            ReasonCode.ENVELOPE_INVALID,
            "specversion",
        ),
    ],
    ids=[
        "non-utf8",
        "non-json",
        "json-array",
        "json-string",
        "tombstone-without-ce-headers",
        "binary-non-json-content-type",
        "binary-non-utf8-header",
        "binary-non-json-value",
        "missing-source",
        "bad-specversion",
    ],
)
def test_undecodable_records_raise_a_record_error_with_a_stable_reason(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    error: type[RecordError],
    reason: ReasonCode,
    message: str,
) -> None:
    """Each way a record can fail to decode raises its error class with its reason code."""
    with pytest.raises(error, match=message) as caught:
        decode(_record(value, headers), LIMIT)
    assert caught.value.reason is reason


def test_binary_mode_tombstone_is_an_event_without_data() -> None:
    """A binary-mode record with no value is an event whose data is None, not an error."""
    decoded = decode(_record(None, BINARY_HEADERS), LIMIT)
    assert decoded.binary_mode is True
    assert decoded.event.data is None


BINARY = [("ce_specversion", b"1.0"), ("ce_id", b"b-1"), ("ce_source", b"/s"), ("ce_type", b"t")]


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        (b'{"n": ' + b"9" * 5_000 + b"}", ()),
        (b"[" * 5_000 + b"]" * 5_000, ()),
        (b"{}", [*BINARY, ("ce_subject", None)]),
    ],
    ids=["5000-digit-integer", "5000-deep-nesting", "binary-header-without-value"],
)
def test_hostile_input_is_a_decode_failure_not_an_internal_error(
    value: bytes, headers: Sequence[tuple[str, bytes | None]]
) -> None:
    """Input Python's JSON parser or our header reading cannot take is decode.failed (bad
    input), never an exception that the pipeline would call internal.error."""
    with pytest.raises(DecodeError) as caught:
        decode(_record(value, headers), 10_000_000)  # type: ignore[arg-type]
    assert caught.value.reason is ReasonCode.DECODE_FAILED
