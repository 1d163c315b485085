"""What the API's routes answer: the response models, and the status of every error code.

A record the pipeline judged (valid, valid_unverified or invalid) is answered with its
outcome document, status 200. A record it could not judge is answered with the error shape
of :mod:`processor.api.errors`, its ``error`` the dead-letter reason code the stream would
have used, its status from :data:`ERROR_STATUS`; codes of the API's own (a deadline passed,
a request the endpoint does not take, the broker not acknowledging) are in the same table.
The README's table of API error codes is this one (a test keeps them together).
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, Field

from processor.api.errors import ErrorDetail
from schemas.outcomes import OutcomeDocument, ReasonCode

#: The API's own error codes, beside the dead-letter reason codes.
VALIDATION_TIMEOUT: Final = "validation.timeout"
BATCH_DEADLINE_EXCEEDED: Final = "batch.deadline_exceeded"
REQUEST_INVALID: Final = "request.invalid"
KAFKA_UNAVAILABLE: Final = "kafka.unavailable"

#: Every error code a route answers with: (HTTP status, what it means).
ERROR_STATUS: Final[dict[str, tuple[int, str]]] = {
    ReasonCode.DECODE_FAILED: (400, "The body is not a JSON CloudEvent (not UTF-8, not JSON)."),
    ReasonCode.ENVELOPE_INVALID: (422, "The CloudEvents envelope is invalid (id, source, ...)."),
    ReasonCode.TYPE_UNKNOWN: (422, "The event's `type` names no record type of this processor."),
    ReasonCode.RECORD_TOO_LARGE: (413, "The event is over `engine.max_record_bytes`."),
    ReasonCode.UPSTREAM_UNAVAILABLE: (
        503, "A required upstream failed, or its circuit breaker is open (`Retry-After`).",
    ),
    ReasonCode.UPSTREAM_TIMEOUT: (504, "A required upstream did not answer in time."),
    ReasonCode.UPSTREAM_RATE_LIMITED: (503, "A required upstream kept answering 429."),
    ReasonCode.UPSTREAM_BAD_RESPONSE: (502, "A required upstream's answer could not be read."),
    ReasonCode.INTERNAL_ERROR: (500, "A fault of the processor (logged with the request id)."),
    VALIDATION_TIMEOUT: (504, "The record was not judged within `api.request_timeout_s`."),
    BATCH_DEADLINE_EXCEEDED: (
        504, "A batch item unfinished at `api.batch_deadline_s` (the batch itself answers 200).",
    ),
    REQUEST_INVALID: (
        422, "The body is not what the endpoint takes (not a JSON array, no or too many events).",
    ),
    KAFKA_UNAVAILABLE: (503, "The broker did not acknowledge the records in time."),
}  # fmt: skip

#: Messages of the codes whose cause must not be shown (upstream URLs, exception text).
SAFE_MESSAGES: Final[dict[str, str]] = {
    ReasonCode.UPSTREAM_UNAVAILABLE: "a required upstream check could not run: it is unavailable",
    ReasonCode.UPSTREAM_TIMEOUT: "a required upstream check could not run: it timed out",
    ReasonCode.UPSTREAM_RATE_LIMITED: "a required upstream check could not run: rate limited",
    ReasonCode.UPSTREAM_BAD_RESPONSE: "a required upstream check could not run: bad answer",
    ReasonCode.INTERNAL_ERROR: "the record could not be processed (an internal error)",
}


class ItemError(BaseModel):
    """Why one batch item has no outcome: the error shape without the request id."""

    error: str
    message: str
    details: list[ErrorDetail] = []


class BatchItem(BaseModel):
    """One event of a batch: its outcome (status 200) or its error (the status /v1/validate
    would have answered)."""

    index: int = Field(ge=0, description="The event's position in the request.")
    status: int = Field(description="200, or the status of the error on its own.")
    outcome: OutcomeDocument | None = None
    error: ItemError | None = None


class BatchResult(BaseModel):
    """Every event's result, in request order."""

    items: list[BatchItem]
    finished: int = Field(ge=0, description="Items judged or refused before the deadline.")
    unfinished: int = Field(ge=0, description="Items marked batch.deadline_exceeded.")


class Placement(BaseModel):
    """Where the broker wrote one record."""

    index: int = Field(ge=0, description="The event's position in the request.")
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class RecordsAccepted(BaseModel):
    """The broker acknowledged every record (acks=all); the stream processor judges them."""

    topic: str
    records: list[Placement]


class Health(BaseModel):
    live: bool = True


class Readiness(BaseModel):
    ready: bool
    accepting_records: bool = Field(description="The producer for /v1/records is connected.")
