"""The API's judging rules without a network: dead letters as safe errors, refusals while a
breaker is open, per-item results of a batch."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from processor.api.errors import ApiProblem
from processor.api.service import ValidationService, problem_for
from processor.config_api import ApiConfig
from processor.config_upstream import BreakerConfig
from processor.inputs import InputRecord
from processor.outcomes import DeadLetter, Outcome
from processor.pipeline import Pipeline
from processor.upstream.breaker import CircuitBreaker
from processor.validation import Validation
from processor.waits import WaitBoard
from schemas.outcomes import ReasonCode


class ScriptedPipeline:
    """Answers each record with the dead letter named by its value; records what it saw."""

    def __init__(self) -> None:
        self.seen: list[InputRecord] = []

    async def process(self, record: InputRecord) -> Outcome:
        self.seen.append(record)
        if record.value == b'"slow"':
            await asyncio.Event().wait()  # never answers: the deadline must end it
        return DeadLetter(ReasonCode.TYPE_UNKNOWN, "UnknownTypeError", "no schema for type 'x'")


def _service(pipeline: ScriptedPipeline, **api: Any) -> tuple[ValidationService, CircuitBreaker]:
    breaker = CircuitBreaker("email", BreakerConfig(consecutive_failures=1), WaitBoard())
    validation = Validation(
        pipeline=cast(Pipeline, pipeline),
        breakers={"email": breaker},
        upstreams_of={"customer.v1": frozenset({"email"})},
    )
    return ValidationService(validation, ApiConfig(**api), 1_000, open_s=2.5), breaker


def test_an_upstream_failure_is_answered_without_its_text() -> None:
    """The error of an upstream dead letter has a fixed message, never the exception's."""
    dead = DeadLetter(ReasonCode.UPSTREAM_UNAVAILABLE, "UpstreamUnavailable",
                      "POST http://10.0.0.7:8081/v1/email/verify: connection refused")  # fmt: skip
    problem = problem_for(dead)
    assert (problem.status, problem.error) == (503, "upstream.unavailable")
    assert "10.0.0.7" not in problem.message
    assert "connection refused" not in json.dumps([d.model_dump() for d in problem.details])


def test_a_record_error_keeps_its_message_for_the_caller() -> None:
    """A record's own problem (an unknown type) is explained to the caller as it is."""
    dead = DeadLetter(ReasonCode.TYPE_UNKNOWN, "UnknownTypeError", "no schema for type 'x'")
    problem = problem_for(dead)
    assert (problem.status, problem.error, problem.message) == (
        422, "type.unknown", "no schema for type 'x'",
    )  # fmt: skip


async def test_an_open_breaker_refuses_at_once_with_retry_after() -> None:
    """While the breaker of an upstream the event's type needs is open, the event is refused
    (503, Retry-After) without reaching the pipeline; other types still are judged."""
    pipeline = ScriptedPipeline()
    service, breaker = _service(pipeline)
    breaker.record(False, True)  # one failure opens it (consecutive_failures=1)
    customer = json.dumps({"type": "customer.v1", "id": "1"}).encode()
    refused = await service.judge_one(customer)
    other = await service.judge_one(json.dumps({"type": "transfer.v1"}).encode())
    assert isinstance(refused, ApiProblem)
    assert (refused.status, refused.error) == (503, "upstream.unavailable")
    assert refused.headers == {"Retry-After": "3"}
    assert isinstance(other, ApiProblem)
    assert other.error == "type.unknown"
    assert [r.value for r in pipeline.seen] == [json.dumps({"type": "transfer.v1"}).encode()]


async def test_a_batch_judges_each_item_at_its_index_and_marks_the_late_ones() -> None:
    """Each item is the value of a record at its index; one that does not finish by the
    deadline is marked batch.deadline_exceeded while the others keep their results."""
    pipeline = ScriptedPipeline()
    service, _ = _service(pipeline, batch_deadline_s=0.2)
    result = await service.judge_batch([{"type": "a"}, "slow", {"type": "b"}])
    assert [(i.index, i.status) for i in result.items] == [(0, 422), (1, 504), (2, 422)]
    assert [i.error.error for i in result.items if i.error] == [
        "type.unknown", "batch.deadline_exceeded", "type.unknown",
    ]  # fmt: skip
    assert (result.finished, result.unfinished) == (2, 1)
    assert sorted((r.topic, r.offset) for r in pipeline.seen) == [
        ("/v1/validate/batch", 0), ("/v1/validate/batch", 1), ("/v1/validate/batch", 2),
    ]  # fmt: skip
