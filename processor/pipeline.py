"""The per-record pipeline: decode, then schema, then upstream checks, then the verdict.

:meth:`Pipeline.process` always returns an :data:`~processor.outcomes.Outcome` and never
raises (but cancellation): its ``except Exception`` turns a bug into a dead letter with
``internal.error`` instead of a crash or a lost record. Expected failures are
:class:`~processor.errors.RecordError` (a dead letter with the error's reason) and
:class:`~processor.errors.UpstreamError` (per check, then the verdict rules below).

Verdict rules: any check's clear "no" makes the record invalid (even when another check
could not run); otherwise a required check that could not run dead-letters it with that
check's reason; otherwise it is valid, and ``valid_unverified`` when an optional check
could not run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from processor import tracing
from processor.checks import Check
from processor.config import ValidationConfig
from processor.decode import DecodedEvent, decode
from processor.documents import OutcomeData
from processor.errors import RecordError, UnknownTypeError, UpstreamError
from processor.inputs import InputRecord
from processor.outcomes import DeadLetter, Invalid, Outcome, Valid
from processor.record_types import RecordType, SchemaViolation
from schemas.outcomes import (
    CheckResult,
    CheckStatus,
    ProcessorInfo,
    Reason,
    ReasonCode,
    Verdict,
)

MAX_REASONS = 50
log = structlog.get_logger("processor.pipeline")


def _dead_letter(exc: Exception, reason: ReasonCode, first_failure: datetime) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        error_class=type(exc).__name__,
        message=str(exc),
        attempts=getattr(exc, "attempts", 1),
        first_failure_at=first_failure,
    )


def _schema_reasons(exc: SchemaViolation) -> list[Reason]:
    return [
        Reason(code=ReasonCode.SCHEMA_INVALID, message=v.message, field=v.field)
        for v in exc.violations[:MAX_REASONS]
    ]


def _event_without_repeats(
    as_received: dict[str, Any], normalized: dict[str, Any] | None, invalid: bool
) -> dict[str, Any]:
    """The event as received, without its data when the normalised data stands for it."""
    if invalid or normalized is None:
        return as_received
    return {k: v for k, v in as_received.items() if k != "data"}


@dataclass(slots=True)
class Pending:
    """A record whose schema passed and whose checks are still to run (:meth:`Pipeline.finish`)."""

    record: InputRecord
    decoded: DecodedEvent
    received: datetime
    started: float
    normalized: dict[str, Any]
    unknown: dict[str, Any] | None
    checks: Sequence[Check]
    #: What the checks see as the record: its model when the type has one, else the data.
    model: Any


class Pipeline:
    """Validates one record at a time; holds no per-record state between calls.

    :meth:`front` does what needs no upstream answer without awaiting (the engine calls it
    for a record it can take at once); :meth:`finish` runs the checks; :meth:`process` both.
    """

    def __init__(
        self,
        *,
        record_types: Mapping[str, RecordType],
        checks: Mapping[str, Sequence[Check]],
        validation: ValidationConfig,
        max_record_bytes: int,
        processor: ProcessorInfo,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._record_types = record_types
        self._checks = checks
        self._keep_unknown = validation.unknown_fields == "keep"
        self._max_record_bytes = max_record_bytes
        self._processor = processor
        self._now = wall_clock

    async def process(self, record: InputRecord) -> Outcome:
        """Validate one record and return its outcome. Never raises (but cancellation)."""
        front = self.front(record)
        if isinstance(front, Pending):
            return await self.finish(front)
        return front

    def front(self, record: InputRecord) -> Outcome | Pending:
        """Everything that needs no upstream answer, without awaiting: the outcome, or the
        record's :class:`Pending` checks for :meth:`finish`. Never raises."""
        received = self._now()
        started = time.perf_counter()
        try:
            return self._front(record, received, started)
        except Exception as exc:  # noqa: BLE001 - logged there, a dead letter, not a crash
            return self._internal_error(record, exc, received)

    async def finish(self, pending: Pending) -> Outcome:
        """Run a record's checks and return its outcome. Never raises (but cancellation)."""
        try:
            return await self._checked(pending)
        except Exception as exc:  # noqa: BLE001 - logged there, a dead letter, not a crash
            return self._internal_error(pending.record, exc, pending.received)

    def _internal_error(self, record: InputRecord, exc: Exception, received: datetime) -> Outcome:
        log.exception(
            "record.internal_error",
            topic=record.topic, partition=record.partition, offset=record.offset,
        )  # fmt: skip
        return _dead_letter(exc, ReasonCode.INTERNAL_ERROR, received)

    def _front(self, record: InputRecord, received: datetime, started: float) -> Outcome | Pending:
        try:
            decoded = decode(record, self._max_record_bytes)
            rtype = self._record_type(decoded.event.type)
        except RecordError as exc:
            return _dead_letter(exc, exc.reason, received)
        event = decoded.event
        data = event.data
        if not isinstance(data, dict):
            reason = Reason(
                code=ReasonCode.SCHEMA_INVALID,
                message=f"data must be a JSON object, not {type(data).__name__}",
                field="data",
            )
            return self._verdict(record, decoded, received, started, [reason], [], None, None)
        unknown: dict[str, Any] | None = None
        if self._keep_unknown:
            known = rtype.field_names
            unknown = {k: v for k, v in data.items() if k not in known} or None
            data = {k: v for k, v in data.items() if k in known}
        try:
            validated = rtype.validate(data)
        except SchemaViolation as exc:
            reasons = _schema_reasons(exc)
            return self._verdict(record, decoded, received, started, reasons, [], None, unknown)
        normalized = validated.data
        checks = self._checks.get(event.type, ())
        if not checks:  # the verdict now, without gathering answers from no checks
            return self._verdict(record, decoded, received, started, [], [], normalized, unknown)
        as_given = validated.model if validated.model is not None else normalized
        return Pending(record, decoded, received, started, normalized, unknown, checks, as_given)

    async def _checked(self, p: Pending) -> Outcome:
        checks = p.checks
        results, errors = await self._run_checks(p.decoded.event.id, p.normalized, checks, p.model)
        rejections = [
            Reason(
                code=ReasonCode.UPSTREAM_REJECTED, message=check.rejection_message(r), check=r.name
            )
            for check, r in zip(checks, results, strict=True)
            if r is not None and r.status is CheckStatus.FAILED
        ]
        if not rejections and errors:
            first = errors[0]
            return _dead_letter(first, first.reason, p.received)
        done = [r for r in results if r is not None]
        unverified = [
            Reason(
                code=ReasonCode.UPSTREAM_UNVERIFIED,
                message=f"{r.name}: could not run",
                check=r.name,
            )
            for r in done
            if r.status is CheckStatus.UNVERIFIED
        ]
        return self._verdict(
            p.record, p.decoded, p.received, p.started, rejections or unverified, done,
            None if rejections else p.normalized, p.unknown,
        )  # fmt: skip

    def _record_type(self, name: str) -> RecordType:
        rtype = self._record_types.get(name)
        if rtype is None:
            raise UnknownTypeError(f"no schema for type {name[:100]!r}")
        return rtype

    async def _run_checks(
        self, record_id: str, data: dict[str, Any], checks: Sequence[Check], record: Any
    ) -> tuple[list[CheckResult | None], list[UpstreamError]]:
        async def one(check: Check) -> CheckResult | UpstreamError:
            with tracing.check_span(check.name, check.config.upstream):
                try:
                    return await check.run(record_id, data, record)
                except UpstreamError as exc:
                    return exc

        if not checks:
            return [], []
        if len(checks) == 1:
            answers = [await one(checks[0])]
        else:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(c)) for c in checks]
            answers = [t.result() for t in tasks]
        results = [a if isinstance(a, CheckResult) else None for a in answers]
        errors = [a for a in answers if isinstance(a, UpstreamError)]
        return results, errors

    def _verdict(
        self,
        record: InputRecord,
        decoded: DecodedEvent,
        received: datetime,
        started: float,
        reasons: list[Reason],
        checks: list[CheckResult],
        normalized: dict[str, Any] | None,
        unknown: dict[str, Any] | None,
    ) -> Outcome:
        invalid = any(r.code is not ReasonCode.UPSTREAM_UNVERIFIED for r in reasons)
        if invalid:
            verdict = Verdict.INVALID
        elif reasons:
            verdict = Verdict.VALID_UNVERIFIED
        else:
            verdict = Verdict.VALID
        event = decoded.event
        key = record.key
        doc = OutcomeData.build(
            outcome="invalid" if invalid else "valid",
            verdict=verdict,
            record_id=event.id,
            record_type=event.type,
            source=event.source,
            reasons=reasons,
            checks=checks,
            event=_event_without_repeats(decoded.as_received, normalized, invalid),
            normalized_data=None if invalid else normalized,
            unknown_fields=unknown,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key=key.decode("utf-8", "replace") if key is not None else None,
            processor=self._processor,
            received_at=received,
            completed_at=self._now(),
            duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
        )
        return Invalid(doc) if invalid else Valid(doc)
