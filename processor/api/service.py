"""Judging records for the API: one, or a batch under a deadline, through the stream's pipeline.

Each event is handed to :meth:`Pipeline.process <processor.pipeline.Pipeline.process>` as the
value of a structured-mode input record, the same bytes a producer would put on the input
topic, so the API and the stream give the same verdict and reason codes. Its input
coordinates name the endpoint (``input.topic`` is ``/v1/validate`` or ``/v1/validate/batch``,
``input.offset`` the item's index). A dead letter becomes an :class:`ApiProblem` with the
dead-letter reason as its code (:data:`~processor.api.models.ERROR_STATUS`); the message of
an upstream or internal failure is a fixed one, never the exception's text.

Two API-only rules: while the breaker of an upstream a record needs is open, the record is
refused at once (503 ``upstream.unavailable`` with ``Retry-After``) instead of waiting the way
stream records wait on Kafka; and every judgement is bounded (``api.request_timeout_s``, or
the batch's deadline, which marks the unfinished items ``batch.deadline_exceeded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Sequence
from typing import Any

import structlog

from processor.api.errors import ApiProblem, ErrorDetail
from processor.api.models import (
    BATCH_DEADLINE_EXCEEDED,
    ERROR_STATUS,
    SAFE_MESSAGES,
    VALIDATION_TIMEOUT,
    BatchItem,
    BatchResult,
    ItemError,
)
from processor.config_api import ApiConfig
from processor.inputs import Record
from processor.outcomes import DeadLetter, Invalid, Valid
from processor.slots import Slots
from processor.upstream.breaker import BreakerState
from processor.validation import Validation
from schemas.outcomes import OutcomeDocument, ReasonCode

log = structlog.get_logger("processor.api")

Judged = OutcomeDocument | ApiProblem


def problem_for(dead: DeadLetter) -> ApiProblem:
    """The error a dead letter is answered with: its reason code, a message safe to show."""
    code = dead.reason.value
    status, _ = ERROR_STATUS[code]
    message = SAFE_MESSAGES.get(code, dead.message)
    return ApiProblem(status, code, message, [ErrorDetail(code=code, message=message)])


def _item(index: int, judged: Judged) -> BatchItem:
    if isinstance(judged, OutcomeDocument):
        return BatchItem(index=index, status=200, outcome=judged)
    error = ItemError(error=judged.error, message=judged.message, details=judged.details)
    return BatchItem(index=index, status=judged.status, error=error)


class ValidationService:
    """Judges events with the shared :class:`~processor.validation.Validation`."""

    def __init__(
        self, validation: Validation, config: ApiConfig, max_record_bytes: int, open_s: float = 1.0
    ) -> None:
        """``open_s``: the longest breaker open time, the ``Retry-After`` of a refusal."""
        self._validation = validation
        self._config = config
        self._max_record_bytes = max_record_bytes
        self._retry_after = str(max(1, math.ceil(open_s)))

    def _refusal(self, raw: bytes, event: Any) -> ApiProblem | None:
        """503 when an upstream this event's type needs has its breaker open (``raw`` is
        parsed for its type only then, when ``event`` is not given)."""
        breakers = self._validation.breakers
        if not any(b.state is BreakerState.OPEN for b in breakers.values()):
            return None
        if event is None and len(raw) <= self._max_record_bytes:
            with contextlib.suppress(ValueError, RecursionError):  # the pipeline says why
                event = json.loads(raw)
        rtype = event.get("type") if isinstance(event, dict) else None
        if not isinstance(rtype, str) or not self._validation.open_upstreams(rtype):
            return None
        code = ReasonCode.UPSTREAM_UNAVAILABLE.value
        message = "a required upstream is unavailable (its circuit breaker is open); retry later"
        return ApiProblem(
            503, code, message, [ErrorDetail(code=code, message=message)],
            headers={"Retry-After": self._retry_after},
        )  # fmt: skip

    async def judge(
        self, raw: bytes, event: Any, endpoint: str, index: int, timeout_s: float | None
    ) -> Judged:
        """The outcome document of ``raw`` (a structured CloudEvent), or why there is none.

        ``event`` is ``raw`` parsed when the caller has it (None otherwise); it only serves
        to refuse early while a breaker is open.
        """
        refused = self._refusal(raw, event)
        if refused is not None:
            return refused
        record = Record(
            topic=endpoint, partition=0, offset=index, timestamp=int(time.time() * 1000),
            key=None, value=raw,
        )  # fmt: skip
        try:
            async with asyncio.timeout(timeout_s):
                outcome = await self._validation.pipeline.process(record)
        except TimeoutError:
            status, _ = ERROR_STATUS[VALIDATION_TIMEOUT]
            message = f"not judged within {timeout_s:g}s"
            return ApiProblem(status, VALIDATION_TIMEOUT, message)
        if isinstance(outcome, Valid | Invalid):
            return outcome.document
        if outcome.reason is ReasonCode.INTERNAL_ERROR:
            log.error("api.internal_error", endpoint=endpoint, index=index,
                      error_class=outcome.error_class)  # fmt: skip
        return problem_for(outcome)

    async def judge_one(self, raw: bytes) -> Judged:
        """``POST /v1/validate``: one event, within ``api.request_timeout_s``."""
        return await self.judge(raw, None, "/v1/validate", 0, self._config.request_timeout_s)

    async def judge_batch(self, events: Sequence[Any]) -> BatchResult:
        """``POST /v1/validate/batch``: every event, ``api.batch_concurrency`` at a time,
        answered by ``api.batch_deadline_s``; the unfinished ones marked as such."""
        slots = Slots(self._config.batch_concurrency)

        async def one(index: int, event: Any) -> Judged:
            async with slots:
                raw = _encoded(event)
                return await self.judge(raw, event, "/v1/validate/batch", index, None)

        tasks = [asyncio.create_task(one(i, e)) for i, e in enumerate(events)]
        try:
            await asyncio.wait(tasks, timeout=self._config.batch_deadline_s)
        finally:
            late = [t for t in tasks if not t.done()]
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        items = []
        status, _ = ERROR_STATUS[BATCH_DEADLINE_EXCEEDED]
        message = f"not finished within the batch deadline of {self._config.batch_deadline_s:g}s"
        unfinished = ApiProblem(status, BATCH_DEADLINE_EXCEEDED, message)
        for index, task in enumerate(tasks):
            judged = task.result() if not task.cancelled() else unfinished
            items.append(_item(index, judged))
        late_count = sum(1 for t in tasks if t.cancelled())
        return BatchResult(items=items, finished=len(tasks) - late_count, unfinished=late_count)


def _encoded(event: Any) -> bytes:
    """A batch item as the bytes of a structured-mode record (any JSON value: the pipeline
    dead-letters what is not a CloudEvent object, as the stream does)."""
    return json.dumps(event).encode()
