"""Outcome payloads: what the processor publishes for every record, and the reason-code catalogue.

A record ends in exactly one of three topics:

- ``valid``: understood, and passed every required check (an optional check that
  could not run marks it ``unverified``).
- ``invalid``: understood, and definitely fails (schema violation, an upstream's clear "no").
- ``dead-letter``: could not be processed. The original record is kept byte for byte and
  the reason travels in headers (:data:`DLQ_HEADERS`), so a replay is lossless.

Valid and invalid outcomes carry an :class:`OutcomeDocument` as JSON.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DLQ_HEADERS",
    "REASON_CATALOGUE",
    "CheckResult",
    "CheckStatus",
    "InputCoordinates",
    "OutcomeDocument",
    "ProcessorInfo",
    "Reason",
    "ReasonCode",
    "Timing",
    "Verdict",
]


class ReasonCode(StrEnum):
    """Stable, machine-readable reason codes. Never renamed; only ever added to."""

    DECODE_FAILED = "decode.failed"
    ENVELOPE_INVALID = "envelope.invalid"
    RECORD_TOO_LARGE = "record.too_large"
    TYPE_UNKNOWN = "type.unknown"
    SCHEMA_INVALID = "schema.invalid"
    UPSTREAM_REJECTED = "upstream.rejected"
    UPSTREAM_UNVERIFIED = "upstream.unverified"
    UPSTREAM_UNAVAILABLE = "upstream.unavailable"
    UPSTREAM_TIMEOUT = "upstream.timeout"
    UPSTREAM_RATE_LIMITED = "upstream.rate_limited"
    UPSTREAM_BAD_RESPONSE = "upstream.bad_response"
    INTERNAL_ERROR = "internal.error"


#: Where each reason code sends a record, and what it means. The README's catalogue is this table.
REASON_CATALOGUE: Final[dict[ReasonCode, tuple[str, str]]] = {
    ReasonCode.DECODE_FAILED: (
        "dead-letter",
        "The bytes are not a CloudEvent: not UTF-8, not JSON, or a binary-mode header is broken.",
    ),
    ReasonCode.ENVELOPE_INVALID: (
        "dead-letter",
        "Decodable, but the CloudEvents envelope is invalid"
        " (missing id/type/source, bad specversion).",
    ),
    ReasonCode.RECORD_TOO_LARGE: (
        "dead-letter",
        "The record's value is larger than `engine.max_record_bytes`; not parsed at all.",
    ),
    ReasonCode.TYPE_UNKNOWN: (
        "dead-letter",
        "The CloudEvent `type` names no record schema this processor knows.",
    ),
    ReasonCode.SCHEMA_INVALID: (
        "invalid",
        "The record's data violates its schema; `reasons[].field` names each offending field.",
    ),
    ReasonCode.UPSTREAM_REJECTED: (
        "invalid",
        "An upstream check answered a clear no (undeliverable e-mail, sanctions hit, ...).",
    ),
    ReasonCode.UPSTREAM_UNVERIFIED: (
        "valid",
        "An optional check could not run; the record is valid but marked unverified.",
    ),
    ReasonCode.UPSTREAM_UNAVAILABLE: (
        "dead-letter",
        "A required upstream answered 5xx or refused connections past the retry budget.",
    ),
    ReasonCode.UPSTREAM_TIMEOUT: (
        "dead-letter",
        "A required upstream did not answer within its timeout past the retry budget.",
    ),
    ReasonCode.UPSTREAM_RATE_LIMITED: (
        "dead-letter",
        "A required upstream kept answering 429 past the retry budget.",
    ),
    ReasonCode.UPSTREAM_BAD_RESPONSE: (
        "dead-letter",
        "A required upstream answered something the check cannot interpret (4xx, not JSON, ...).",
    ),
    ReasonCode.INTERNAL_ERROR: (
        "dead-letter",
        "A bug in the processor; the record is kept intact for replay once fixed.",
    ),
}

#: Headers added to a dead-lettered record (one set: re-dead-lettering replaces, never appends).
DLQ_HEADERS: Final[tuple[str, ...]] = (
    "dlq.reason",
    "dlq.error.class",
    "dlq.error.message",
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.original.timestamp",
    "dlq.attempts",
    "dlq.first.failure.time",
    "dlq.processor",
)


class Verdict(StrEnum):
    """The verdict of a valid or invalid outcome."""

    VALID = "valid"
    VALID_UNVERIFIED = "valid_unverified"
    INVALID = "invalid"


class CheckStatus(StrEnum):
    """How one upstream check ended for one record."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNVERIFIED = "unverified"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reason(_Frozen):
    """Why a record is invalid (or unverified): one stable code plus human detail."""

    code: ReasonCode
    message: str = Field(max_length=1024)
    field: str | None = Field(default=None, max_length=256)
    check: str | None = Field(default=None, max_length=128)


class CheckResult(_Frozen):
    """The evidence of one upstream check: what it asked, what it heard, how long it took."""

    name: str = Field(max_length=128)
    upstream: str = Field(max_length=128)
    status: CheckStatus
    required: bool
    attempts: int = Field(ge=0)
    latency_ms: float = Field(ge=0)
    http_status: int | None = None
    evidence: dict[str, Any] | None = None


class InputCoordinates(_Frozen):
    """Where the input record was read from."""

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    timestamp_ms: int | None = None
    key: str | None = Field(default=None, description="The record key, UTF-8 with replacement.")


class ProcessorInfo(_Frozen):
    """Which processor wrote the outcome."""

    name: str
    version: str
    instance: str


class Timing(_Frozen):
    """When processing started and ended, and how long each part took."""

    received_at: datetime
    completed_at: datetime
    duration_ms: float = Field(ge=0)


class OutcomeDocument(_Frozen):
    """The value published to the valid and invalid topics (JSON)."""

    schema_version: Literal["outcome.v1"] = "outcome.v1"
    outcome: Literal["valid", "invalid"]
    verdict: Verdict
    record_id: str = Field(max_length=256)
    record_type: str = Field(max_length=256)
    source: str = Field(max_length=2048)
    reasons: list[Reason] = Field(default_factory=list, max_length=256)
    checks: list[CheckResult] = Field(default_factory=list, max_length=64)
    event: dict[str, Any] = Field(
        description=(
            "The input CloudEvent as received: its attributes, and its data unless"
            " normalized_data holds it (valid outcomes)."
        )
    )
    normalized_data: dict[str, Any] | None = Field(
        default=None,
        description="The record's data after validation and normalisation (valid only).",
    )
    unknown_fields: dict[str, Any] | None = Field(
        default=None, description="Fields kept, not validated, when unknown_fields=keep."
    )
    input: InputCoordinates
    processor: ProcessorInfo
    timing: Timing
