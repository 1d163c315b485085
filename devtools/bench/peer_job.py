"""The peers' job: the schema-only scenario's work, as a plain function a peer framework calls.

The benchmark's peer contestants (``peer_quix``, ``peer_faststream``) run the processor's
schema-only job in another stream framework: decode the record (CloudEvents 1.0, structured
or binary mode), validate the envelope and the ``data`` with the same pydantic models
(``schemas/``), and route the record to valid, invalid or dead-letter. Their value on the
valid and invalid topics is a small JSON outcome (id, type, verdict, reasons, the normalised
data); a dead letter keeps the original value, with its reason code in ``dlq.reason``.

It needs no peer library, so the unit tests check it without the ``bench`` extra, and it
imports nothing from ``processor/``: the peers judge on their own, from the same schemas.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from pydantic import ValidationError

from schemas.envelope import BINARY_HEADER_PREFIX, CloudEvent
from schemas.outcomes import ReasonCode
from schemas.records import RECORD_TYPES

Route = Literal["valid", "invalid", "dead-letter"]
MAX_RECORD_BYTES = 262_144  # the processor's default validation.max_record_bytes
_JSON_TYPES = ("application/json", "text/json")
_SCHEMA = ReasonCode.SCHEMA_INVALID.value


class Judged(NamedTuple):
    """Where a record goes and what is published there."""

    route: Route
    reason: str  # "ok" when valid, else a reason code
    value: bytes | None


class _Undecodable(Exception):
    pass


def _envelope(value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> dict[str, Any]:
    by_name = {name.lower(): raw for name, raw in headers}
    try:
        if f"{BINARY_HEADER_PREFIX}specversion" in by_name:
            attrs: dict[str, Any] = {
                name[len(BINARY_HEADER_PREFIX) :]: (raw or b"").decode()
                for name, raw in by_name.items()
                if name.startswith(BINARY_HEADER_PREFIX)
            }
            if value is not None:
                content_type = (by_name.get("content-type") or b"application/json").decode()
                if content_type.split(";")[0].strip().lower() not in _JSON_TYPES:
                    raise _Undecodable(content_type)
                attrs["data"] = json.loads(value)
                attrs.setdefault("datacontenttype", content_type)
            return attrs
        if value is None:
            raise _Undecodable("tombstone")
        loaded = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Undecodable(str(exc)) from exc
    if not isinstance(loaded, dict):
        raise _Undecodable(type(loaded).__name__)
    return loaded


def _dead(value: bytes | None, reason: ReasonCode) -> Judged:
    return Judged("dead-letter", reason.value, value)


def _invalid(event_id: str, event_type: str, reasons: list[dict[str, Any]]) -> Judged:
    outcome = {"id": event_id, "type": event_type, "verdict": "invalid", "reasons": reasons}
    return Judged("invalid", _SCHEMA, json.dumps(outcome).encode())


def judge(value: bytes | None, headers: Sequence[tuple[str, bytes | None]] = ()) -> Judged:
    """Decode, validate and route one record, as the processor's schema-only scenario does."""
    if value is not None and len(value) > MAX_RECORD_BYTES:
        return _dead(value, ReasonCode.RECORD_TOO_LARGE)
    try:
        attrs = _envelope(value, headers)
    except _Undecodable:
        return _dead(value, ReasonCode.DECODE_FAILED)
    try:
        event = CloudEvent.model_validate(attrs)
    except ValidationError:
        return _dead(value, ReasonCode.ENVELOPE_INVALID)
    model = RECORD_TYPES.get(event.type)
    if model is None:
        return _dead(value, ReasonCode.TYPE_UNKNOWN)
    if not isinstance(event.data, dict):
        return _invalid(event.id, event.type, [{"code": _SCHEMA, "field": "data"}])
    try:
        record = model.model_validate(event.data)
    except ValidationError as exc:
        reasons: list[dict[str, Any]] = [
            {"code": _SCHEMA, "message": e["msg"], "field": ".".join(map(str, e["loc"])) or None}
            for e in exc.errors()
        ]
        return _invalid(event.id, event.type, reasons)
    outcome = {"id": event.id, "type": event.type, "verdict": "valid", "reasons": [],
               "data": record.model_dump(mode="json")}  # fmt: skip
    return Judged("valid", "ok", json.dumps(outcome).encode())
