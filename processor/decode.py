"""Decoding input bytes into a CloudEvent, in both Kafka bindings of CloudEvents 1.0.

- *Binary* mode: a ``ce_specversion`` header is present; ``ce_*`` headers carry the
  attributes and the value is the data (JSON, as ``content-type`` says).
- *Structured* mode: otherwise; the value is a whole JSON CloudEvent
  (``content-type: application/cloudevents+json``, or no content-type at all).

Everything that goes wrong here is a :class:`~processor.errors.RecordError` with a stable
reason code; nothing else escapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from processor.errors import DecodeError, EnvelopeError, RecordTooLarge
from processor.inputs import InputRecord
from schemas.envelope import BINARY_HEADER_PREFIX, CloudEvent

_JSON_CONTENT_TYPES = ("application/json", "text/json")
#: Every digit as ``1``, ``[`` and ``{`` as ``[``, any other byte as a space (:func:`_json`).
_DIGITS_AND_OPENINGS = bytes(
    0x31 if 0x30 <= b <= 0x39 else 0x5B if b in b"[{" else 0x20 for b in range(256)
)
_LONG_DIGIT_RUN = b"1" * 19
#: Far below the standard parser's nesting limit (about 1,000, from the recursion limit).
_MAX_OPENINGS = 500


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """A CloudEvent and the JSON object it was read from (attributes plus ``data``)."""

    event: CloudEvent
    as_received: dict[str, Any]
    binary_mode: bool


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not UTF-8 (byte {exc.start})") from exc


def _json(raw: bytes, what: str) -> Any:
    """The JSON value of ``raw``, as the standard library's parser gives it.

    orjson parses first (2 against 7-9 µs for a bench record, measured for issue 15). It
    gives the same values for what both accept, but it turns an integer outside 64 bits
    into a float, and it accepts nesting up to 1,024 levels where the standard parser stops
    near 1,000. So a value with a run of 19 digits or more (an integer that may be one) or
    with 500 or more ``[`` and ``{`` goes to the standard parser, and so does whatever orjson
    refuses (NaN, Infinity, lone surrogates, invalid UTF-8): the standard parser then accepts
    it or says why not, exactly as before (``tests/unit/test_decode_json.py``).
    """
    shape = raw.translate(_DIGITS_AND_OPENINGS)
    if _LONG_DIGIT_RUN not in shape and shape.count(b"[") < _MAX_OPENINGS:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the standard parser decides, with its own message
    try:
        return json.loads(_text(raw, what))
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"{what} is not JSON: {exc.msg} at line {exc.lineno} col {exc.colno}"
        ) from exc
    except RecursionError:
        raise DecodeError(f"{what} is nested too deeply to decode") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise DecodeError(f"{what} is not decodable JSON: {str(exc)[:200]}") from exc


def _binary_attributes(headers: dict[str, bytes | None]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for name, raw in headers.items():
        if name.startswith(BINARY_HEADER_PREFIX):
            if raw is None:  # Kafka allows a header without a value; an attribute needs one
                raise DecodeError(f"header {name} has no value")
            attrs[name[len(BINARY_HEADER_PREFIX) :]] = _text(raw, f"header {name}")
    return attrs


def _envelope_error(exc: ValidationError) -> EnvelopeError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(event)"
    return EnvelopeError(f"{where}: {first['msg']} ({exc.error_count()} error(s))")


def decode(record: InputRecord, max_record_bytes: int) -> DecodedEvent:
    """Turn one input record into a CloudEvent.

    Raises:
        RecordTooLarge: The value is over ``max_record_bytes`` (checked before parsing).
        DecodeError: The bytes are not UTF-8 JSON, or a ``ce_`` header is not UTF-8.
        EnvelopeError: Decodable, but not a valid CloudEvents 1.0 envelope.
    """
    value = record.value
    if value is not None and len(value) > max_record_bytes:
        raise RecordTooLarge(f"value is {len(value)} bytes, over the {max_record_bytes} limit")
    # Kafka allows a header without a value (None), whatever the InputRecord type says
    headers: dict[str, bytes | None] = {name.lower(): raw for name, raw in record.headers}
    binary = f"{BINARY_HEADER_PREFIX}specversion" in headers
    if binary:
        as_received = _binary_attributes(headers)
        content_type = _text(headers.get("content-type") or b"application/json", "content-type")
        if value is not None:
            if content_type.split(";")[0].strip().lower() not in _JSON_CONTENT_TYPES:
                raise DecodeError(f"binary-mode content-type {content_type!r} is not JSON")
            as_received["data"] = _json(value, "value")
            as_received.setdefault("datacontenttype", content_type)
    else:
        if value is None:
            raise DecodeError("value is empty (a tombstone) and there are no ce_ headers")
        loaded = _json(value, "value")
        if not isinstance(loaded, dict):
            raise DecodeError(f"value is JSON {type(loaded).__name__}, not a CloudEvent object")
        as_received = loaded
    try:
        event = CloudEvent.model_validate(as_received)
    except ValidationError as exc:
        raise _envelope_error(exc) from exc
    return DecodedEvent(event=event, as_received=as_received, binary_mode=binary)
