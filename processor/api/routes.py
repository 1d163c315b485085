"""The ``/v1`` routes and the probes: strict reading of each body, then the service or the broker.

Bodies are read as bytes and parsed here, not by FastAPI: ``/v1/validate`` hands the bytes
as they came to the pipeline (so a body that is not JSON gets the stream's own
``decode.failed``); ``/v1/validate/batch`` and ``/v1/records`` take a JSON array of events
(the CloudEvents batched format), ``/v1/records`` also a single event object. Each event of
``/v1/records`` is written as a structured-mode record (``content-type:
application/cloudevents+json``) keyed by its ``partitionkey`` extension when it has one
(the CloudEvents Kafka binding's key mapping), else without a key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from processor.api.errors import ApiProblem, ErrorBody, ErrorDetail
from processor.api.models import (
    ERROR_STATUS,
    KAFKA_UNAVAILABLE,
    REQUEST_INVALID,
    VALIDATION_TIMEOUT,
    BatchResult,
    Health,
    Placement,
    Readiness,
    RecordsAccepted,
)
from processor.errors import KafkaUnavailable, RecordRejected
from schemas.envelope import STRUCTURED_CONTENT_TYPE, CloudEvent
from schemas.outcomes import OutcomeDocument, ReasonCode

#: What a Kafka record adds to its key and value on the wire, at most (batch and headers).
RECORD_OVERHEAD_BYTES: Final = 512
_HEADERS: Final = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


class Judge(Protocol):
    """What the validation routes judge with (:class:`~processor.api.service.ValidationService`)."""

    async def judge_one(self, raw: bytes) -> OutcomeDocument | ApiProblem: ...
    async def judge_batch(self, events: Sequence[Any]) -> BatchResult: ...


class Publisher(Protocol):
    """What ``/v1/records`` writes with (``processor.kafka.RecordSender``)."""

    async def publish(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
        timeout_s: float,
    ) -> list[tuple[int, int]]: ...  # fmt: skip


@dataclass(frozen=True)
class ApiContext:
    """Everything the routes use, built by the composition root."""

    service: Judge
    publisher: Publisher
    input_topic: str
    max_request_bytes: int
    max_batch_items: int
    request_timeout_s: float
    ready: Callable[[], bool]


def _json(model: BaseModel, status: int = 200) -> Response:
    """``model`` as JSON, serialised by pydantic-core in one step: 16 us for an outcome
    document of three checks, where ``JSONResponse(model.model_dump(mode="json"))`` took 64."""
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def _errors(*codes: str) -> dict[int | str, dict[str, Any]]:
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERROR_STATUS[code][0], []).append(f"`{code}`")
    return {status: {"model": ErrorBody, "description": ", ".join(names)}
            for status, names in sorted(by_status.items())}  # fmt: skip


def _invalid(message: str, code: str, field: str | None = None) -> ApiProblem:
    status, _ = ERROR_STATUS[REQUEST_INVALID]
    return ApiProblem(status, REQUEST_INVALID, message, [ErrorDetail(code=code, message=message,
                                                                     field=field)])  # fmt: skip


def _parsed(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8 or not JSON, or nested too deeply
        raise _invalid("the body is not JSON", "body.not_json") from None


def _events(raw: bytes, limit: int, *, single_allowed: bool) -> list[Any]:
    body = _parsed(raw)
    if single_allowed and isinstance(body, dict):
        return [body]
    if not isinstance(body, list):
        expected = "a JSON array of events" + (" or one event object" if single_allowed else "")
        raise _invalid(f"the body must be {expected}", "body.not_an_array")
    if not body:
        raise _invalid("the body holds no events", "events.none")
    if len(body) > limit:
        raise _invalid(f"{len(body)} events, over the limit of {limit}", "events.too_many")
    return body


_BODY_SCHEMA = CloudEvent.model_json_schema()
_ONE_EVENT = {"requestBody": {"required": True, "content": {
    STRUCTURED_CONTENT_TYPE: {"schema": _BODY_SCHEMA}, "application/json": {"schema": _BODY_SCHEMA},
}}}  # fmt: skip
_MANY_EVENTS = {"requestBody": {"required": True, "content": {
    "application/cloudevents-batch+json": {"schema": {"type": "array", "items": _BODY_SCHEMA}},
    "application/json": {"schema": {"type": "array", "items": _BODY_SCHEMA}},
}}}  # fmt: skip
_JUDGE_ERRORS = (
    ReasonCode.DECODE_FAILED, ReasonCode.ENVELOPE_INVALID, ReasonCode.TYPE_UNKNOWN,
    ReasonCode.RECORD_TOO_LARGE, ReasonCode.UPSTREAM_UNAVAILABLE, ReasonCode.UPSTREAM_TIMEOUT,
    ReasonCode.UPSTREAM_RATE_LIMITED, ReasonCode.UPSTREAM_BAD_RESPONSE, ReasonCode.INTERNAL_ERROR,
    VALIDATION_TIMEOUT,
)  # fmt: skip


def add_routes(api: FastAPI, ctx: ApiContext) -> None:
    """Install the ``/v1`` routes, ``/healthz`` and ``/readyz`` on ``api``."""

    @api.post(
        "/v1/validate", response_model=OutcomeDocument, openapi_extra=_ONE_EVENT,
        summary="Judge one CloudEvent: its outcome document (200, valid or invalid alike)",
        responses=_errors(*_JUDGE_ERRORS),
    )  # fmt: skip
    async def validate(request: Request) -> Response:
        judged = await ctx.service.judge_one(await request.body())
        if isinstance(judged, ApiProblem):
            raise judged
        return _json(judged)

    @api.post(
        "/v1/validate/batch", response_model=BatchResult, openapi_extra=_MANY_EVENTS,
        summary="Judge up to api.max_batch_items events: every item's outcome or error, in order",
        description="Partial success: each item has its own status. Items unfinished at "
        "api.batch_deadline_s are answered with the error batch.deadline_exceeded.",
        responses=_errors(REQUEST_INVALID),
    )  # fmt: skip
    async def validate_batch(request: Request) -> Response:
        events = _events(await request.body(), ctx.max_batch_items, single_allowed=False)
        result = await ctx.service.judge_batch(events)
        return _json(result)

    @api.post(
        "/v1/records", response_model=RecordsAccepted, status_code=202, openapi_extra=_MANY_EVENTS,
        summary="Publish events to the input topic; 202 once the broker acknowledged them all",
        description="One event object or a JSON array of them, written as structured-mode "
        "records (idempotent producer, acks=all) keyed by their partitionkey extension; the "
        "stream processor then judges them. A 503 may follow a partial write: a retry may "
        "write some events twice (each is judged again; its CloudEvent id tells them apart).",
        responses=_errors(REQUEST_INVALID, ReasonCode.RECORD_TOO_LARGE, KAFKA_UNAVAILABLE),
    )  # fmt: skip
    async def records(request: Request) -> Response:
        events = _events(await request.body(), ctx.max_batch_items, single_allowed=True)
        batch = []
        too_large = []
        for index, event in enumerate(events):
            value = json.dumps(event).encode()
            key = event.get("partitionkey") if isinstance(event, dict) else None
            encoded_key = str(key).encode() if isinstance(key, str | int) else None
            if len(value) + len(encoded_key or b"") + RECORD_OVERHEAD_BYTES > ctx.max_request_bytes:
                too_large.append(index)
            batch.append((encoded_key, value, list(_HEADERS)))
        if too_large:
            code = ReasonCode.RECORD_TOO_LARGE.value
            message = f"over the producer's limit of {ctx.max_request_bytes} bytes"
            raise ApiProblem(ERROR_STATUS[code][0], code, f"{len(too_large)} event(s) {message}",
                             [ErrorDetail(code=code, message=message, field=f"[{i}]")
                              for i in too_large[:50]])  # fmt: skip
        try:
            placed = await ctx.publisher.publish(ctx.input_topic, batch, ctx.request_timeout_s)
        except RecordRejected:
            code = ReasonCode.RECORD_TOO_LARGE.value
            raise ApiProblem(
                413, code, "the broker's client refused a record as too large"
            ) from None
        except KafkaUnavailable:
            message = ("the broker did not acknowledge the records in time (unreachable, or "
                       "no input topic); some may be written")  # fmt: skip
            raise ApiProblem(
                503, KAFKA_UNAVAILABLE, message, headers={"Retry-After": "1"}
            ) from None
        accepted = RecordsAccepted(
            topic=ctx.input_topic,
            records=[Placement(index=i, partition=p, offset=o) for i, (p, o) in enumerate(placed)],
        )
        return _json(accepted, 202)

    @api.get("/healthz", response_model=Health, summary="The event loop answers (200)")
    async def healthz() -> Health:
        return Health()

    @api.get(
        "/readyz", response_model=Readiness,
        summary="Started, and the producer for /v1/records connected (200), else 503",
        responses={503: {"model": Readiness, "description": "not ready"}},
    )  # fmt: skip
    async def readyz() -> Response:
        ready = ctx.ready()
        body = Readiness(ready=ready, accepting_records=ready)
        return _json(body, 200 if ready else 503)
