"""Tests of the per-record pipeline and its checks, with fake upstream callers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import pytest

from processor.checkplan import CheckConfig
from processor.checks import Check
from processor.config import ValidationConfig
from processor.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from processor.inputs import Record
from processor.outcomes import DeadLetter, Invalid, Outcome, Valid
from processor.pipeline import Pipeline
from processor.record_types import PydanticRecordType, RecordTypes
from processor.upstream import UpstreamRequest, UpstreamResponse
from schemas import RECORD_TYPES
from schemas.outcomes import CheckStatus, ProcessorInfo, ReasonCode, Verdict
from tests.support import custom_checks

INFO = ProcessorInfo(name="record-processor", version="0.0.0", instance="test")
CUSTOMER: dict[str, Any] = {
    "company_name": "  Acme GmbH ",
    "email": "  Alice.Ops@Example.COM ",
    "country": "de",
    "vat_id": "DE 123 456 789",
}
WAIT_S = 2.0

Answer = dict[str, Any] | UpstreamError | BaseException
Behaviour = Callable[[UpstreamRequest], Awaitable[Answer]]


class FakeCaller:
    """A Caller that answers from a fixed body, error or coroutine, and records requests."""

    def __init__(self, name: str, answer: Answer | Behaviour) -> None:
        self.name = name
        self._answer = answer
        self.requests: list[UpstreamRequest] = []

    async def call(self, request: UpstreamRequest) -> UpstreamResponse:
        self.requests.append(request)
        answer = await self._answer(request) if callable(self._answer) else self._answer
        if isinstance(answer, BaseException):
            raise answer
        return UpstreamResponse(status=200, body=answer, latency_ms=1.5)


def _check(
    name: str,
    caller: FakeCaller,
    *,
    body: dict[str, str] | None = None,
    pass_field: str = "ok",
    required: bool = True,
    when_present: str | None = None,
) -> Check:
    config = CheckConfig(
        name=name,
        upstream=caller.name,
        path=f"/v1/{name}",
        body=body or {"email": "email"},
        pass_field=pass_field,
        reason_field="why",
        required=required,
        when_present=when_present,
    )
    return Check(config, caller)


def _pipeline(
    checks: Sequence[Check] = (), unknown_fields: Literal["reject", "keep"] = "reject"
) -> Pipeline:
    return Pipeline(
        record_types=TYPES,
        checks={"customer.v1": list(checks)},
        validation=ValidationConfig(unknown_fields=unknown_fields),
        max_record_bytes=65_536,
        processor=INFO,
        wall_clock=lambda: datetime(2025, 1, 1, tzinfo=UTC),
    )


#: The example types, loaded the way the config loads them.
TYPES = RecordTypes([PydanticRecordType(name, model) for name, model in RECORD_TYPES.items()])


def _record(data: Any = None, *, type_: str = "customer.v1", event_id: str = "rec-1") -> Record:
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/crm",
        "type": type_,
        "data": CUSTOMER if data is None else data,
    }
    return Record(
        topic="records.in",
        partition=2,
        offset=41,
        timestamp=1_700_000_000_000,
        key=b"cust-1",
        value=json.dumps(event).encode(),
    )


async def _process(pipeline: Pipeline, record: Record) -> Outcome:
    return await asyncio.wait_for(pipeline.process(record), WAIT_S)


async def test_a_valid_customer_is_valid_with_normalised_data() -> None:
    """A customer passing schema and checks is Valid, with the normalised data published."""
    caller = FakeCaller("email", {"ok": True})
    outcome = await _process(_pipeline([_check("email_ok", caller)]), _record())
    assert isinstance(outcome, Valid)
    doc = outcome.document
    assert doc.verdict is Verdict.VALID
    assert doc.outcome == "valid"
    assert doc.reasons == []
    assert doc.normalized_data is not None
    assert doc.normalized_data["email"] == "alice.ops@example.com"
    assert doc.normalized_data["company_name"] == "Acme GmbH"
    assert doc.normalized_data["vat_id"] == "DE123456789"
    assert "data" not in doc.event  # the normalised data stands for it: no repeats
    assert doc.event["id"] == "rec-1"
    assert (doc.input.topic, doc.input.partition, doc.input.offset) == ("records.in", 2, 41)
    assert doc.input.key == "cust-1"
    assert [(c.name, c.status) for c in doc.checks] == [("email_ok", CheckStatus.PASSED)]


async def test_a_valid_outcome_document_repeats_no_value_of_the_record() -> None:
    """The data appears once (normalized_data): not again in event, nor in the evidence of a
    check whose upstream echoes the request."""
    email = "alice.ops@example.com"
    caller = FakeCaller("email", {"email": email, "ok": True, "why": None})
    outcome = await _process(_pipeline([_check("email_ok", caller)]), _record())
    assert isinstance(outcome, Valid)
    dumped = outcome.document.model_dump_json()
    assert dumped.count(email) == 1
    assert outcome.document.checks[0].evidence == {"ok": True, "why": None}


async def test_a_check_is_sent_the_normalised_field_values() -> None:
    """The request body maps request keys to the record's normalised field values."""
    caller = FakeCaller("email", {"ok": True})
    await _process(_pipeline([_check("email_ok", caller)]), _record())
    assert [r.json_body for r in caller.requests] == [{"email": "alice.ops@example.com"}]


async def test_a_schema_violation_is_invalid_naming_the_field() -> None:
    """A record breaking its schema is Invalid with schema.invalid reasons per field."""
    caller = FakeCaller("email", {"ok": True})
    data = {**CUSTOMER, "email": "not-an-address", "country": "XX"}
    outcome = await _process(_pipeline([_check("email_ok", caller)]), _record(data))
    assert isinstance(outcome, Invalid)
    doc = outcome.document
    assert doc.verdict is Verdict.INVALID
    assert doc.normalized_data is None
    assert {r.code for r in doc.reasons} == {ReasonCode.SCHEMA_INVALID}
    assert {r.field for r in doc.reasons} == {"email", "country"}
    assert caller.requests == []


async def test_an_upstream_no_is_invalid_with_the_check_named() -> None:
    """A check's clear "no" is Invalid with upstream.rejected naming the check and why."""
    caller = FakeCaller("email", {"ok": False, "why": "mailbox_unavailable"})
    outcome = await _process(_pipeline([_check("email_ok", caller)]), _record())
    assert isinstance(outcome, Invalid)
    [reason] = outcome.document.reasons
    assert reason.code is ReasonCode.UPSTREAM_REJECTED
    assert reason.check == "email_ok"
    assert reason.message == "email_ok: mailbox_unavailable"
    assert outcome.document.checks[0].status is CheckStatus.FAILED


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (UpstreamTimeout("slow", upstream="email"), ReasonCode.UPSTREAM_TIMEOUT),
        (UpstreamUnavailable("down", upstream="u", status=503), ReasonCode.UPSTREAM_UNAVAILABLE),
    ],
)
async def test_a_required_check_that_cannot_run_dead_letters_the_record(
    error: UpstreamError, reason: ReasonCode
) -> None:
    """A required check raising an UpstreamError dead-letters the record with its reason."""
    caller = FakeCaller("email", error)
    outcome = await _process(_pipeline([_check("email_ok", caller)]), _record())
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason is reason
    assert outcome.error_class == type(error).__name__


async def test_a_clear_no_wins_over_another_checks_error() -> None:
    """One check saying "no" and another failing to run makes the record Invalid."""
    rejecting = FakeCaller("email", {"ok": False, "why": "bounced"})
    failing = FakeCaller("vat", UpstreamTimeout("slow", upstream="vat"))
    checks = [_check("email_ok", rejecting), _check("vat_ok", failing)]
    outcome = await _process(_pipeline(checks), _record())
    assert isinstance(outcome, Invalid)
    assert [(r.code, r.check) for r in outcome.document.reasons] == [
        (ReasonCode.UPSTREAM_REJECTED, "email_ok")
    ]


async def test_an_optional_check_that_cannot_run_makes_the_record_unverified() -> None:
    """An optional check failing to run gives Valid with verdict valid_unverified."""
    passing = FakeCaller("email", {"ok": True})
    failing = FakeCaller("vat", UpstreamUnavailable("down", upstream="vat", status=503))
    checks = [_check("email_ok", passing), _check("vat_ok", failing, required=False)]
    outcome = await _process(_pipeline(checks), _record())
    assert isinstance(outcome, Valid)
    doc = outcome.document
    assert doc.verdict is Verdict.VALID_UNVERIFIED
    assert doc.outcome == "valid"
    assert [(r.code, r.check) for r in doc.reasons] == [(ReasonCode.UPSTREAM_UNVERIFIED, "vat_ok")]
    statuses = {c.name: c.status for c in doc.checks}
    assert statuses == {"email_ok": CheckStatus.PASSED, "vat_ok": CheckStatus.UNVERIFIED}
    assert doc.normalized_data is not None


async def test_when_present_skips_a_check_if_the_field_is_absent() -> None:
    """A check with when_present is skipped, without a call, when its field is not set."""
    vat = FakeCaller("vat", {"ok": True})
    check = _check("vat_ok", vat, body={"vat_id": "vat_id"}, when_present="vat_id")
    data = {k: v for k, v in CUSTOMER.items() if k != "vat_id"}
    outcome = await _process(_pipeline([check]), _record(data))
    assert isinstance(outcome, Valid)
    assert outcome.document.verdict is Verdict.VALID
    [result] = outcome.document.checks
    assert result.status is CheckStatus.SKIPPED
    assert result.attempts == 0
    assert vat.requests == []


async def test_when_present_runs_the_check_if_the_field_is_set() -> None:
    """The same check runs when its when_present field has a value."""
    vat = FakeCaller("vat", {"ok": True})
    check = _check("vat_ok", vat, body={"vat_id": "vat_id"}, when_present="vat_id")
    outcome = await _process(_pipeline([check]), _record())
    assert isinstance(outcome, Valid)
    assert [r.json_body for r in vat.requests] == [{"vat_id": "DE123456789"}]


async def test_the_checks_of_one_record_run_concurrently() -> None:
    """Two checks that each wait for the other to start can only finish if run together."""
    started = 0
    both_started = asyncio.Event()

    async def rendezvous(_request: UpstreamRequest) -> Answer:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await both_started.wait()
        return {"ok": True}

    checks = [_check("a", FakeCaller("a", rendezvous)), _check("b", FakeCaller("b", rendezvous))]
    outcome = await _process(_pipeline(checks), _record())
    assert isinstance(outcome, Valid)
    assert started == 2


async def test_an_unknown_type_is_dead_lettered() -> None:
    """A record whose type names no schema is dead-lettered with type.unknown."""
    outcome = await _process(_pipeline(), _record(type_="order.v9"))
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason is ReasonCode.TYPE_UNKNOWN
    assert "order.v9" in outcome.message


@pytest.mark.parametrize("data", [["a", "b"], "text", 42])
async def test_data_that_is_not_an_object_is_invalid(data: Any) -> None:
    """A record whose data is not a JSON object is Invalid, on the data field."""
    outcome = await _process(_pipeline(), _record(data))
    assert isinstance(outcome, Invalid)
    [reason] = outcome.document.reasons
    assert reason.code is ReasonCode.SCHEMA_INVALID
    assert reason.field == "data"


async def test_an_undecodable_record_is_dead_lettered_with_the_decode_reason() -> None:
    """Bytes that are not a CloudEvent are dead-lettered with decode.failed."""
    record = Record("records.in", 0, 1, 0, None, b"\xff\xfe")
    outcome = await _process(_pipeline(), record)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason is ReasonCode.DECODE_FAILED


@pytest.mark.parametrize(
    ("policy", "kind", "unknown"),
    [("keep", Valid, {"loyalty_tier": "gold"}), ("reject", Invalid, None)],
)
async def test_unknown_fields_are_kept_or_rejected_per_config(
    policy: Literal["reject", "keep"], kind: type[Valid | Invalid], unknown: dict[str, Any] | None
) -> None:
    """With keep, extra fields travel in unknown_fields and the rest is validated."""
    data = {**CUSTOMER, "loyalty_tier": "gold"}
    outcome = await _process(_pipeline(unknown_fields=policy), _record(data))
    assert isinstance(outcome, kind)
    doc = outcome.document
    assert doc.unknown_fields == unknown
    if policy == "keep":
        assert doc.normalized_data is not None
        assert "loyalty_tier" not in doc.normalized_data
        assert doc.normalized_data["email"] == "alice.ops@example.com"
    else:
        assert [r.field for r in doc.reasons] == ["loyalty_tier"]


async def test_kept_unknown_fields_do_not_hide_schema_errors() -> None:
    """With keep, a bad known field still makes the record Invalid."""
    data = {**CUSTOMER, "email": "nope", "loyalty_tier": "gold"}
    outcome = await _process(_pipeline(unknown_fields="keep"), _record(data))
    assert isinstance(outcome, Invalid)
    assert [r.field for r in outcome.document.reasons] == ["email"]
    assert outcome.document.unknown_fields == {"loyalty_tier": "gold"}


@pytest.mark.parametrize("n_checks", [1, 2])
async def test_a_bug_in_a_check_is_dead_lettered_not_raised(n_checks: int) -> None:
    """A check raising a plain RuntimeError ends as DeadLetter internal.error, not an exception."""
    checks = [_check(f"c{i}", FakeCaller(f"u{i}", RuntimeError("boom"))) for i in range(n_checks)]
    outcome = await _process(_pipeline(checks), _record())
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason is ReasonCode.INTERNAL_ERROR


async def test_the_idempotency_key_is_record_id_and_check_name() -> None:
    """Each check's request carries Idempotency-Key <record id>:<check name>."""
    first, second = FakeCaller("email", {"ok": True}), FakeCaller("vat", {"ok": True})
    checks = [_check("email_ok", first), _check("vat_ok", second)]
    await _process(_pipeline(checks), _record(event_id="evt-77"))
    assert [r.idempotency_key for r in first.requests] == ["evt-77:email_ok"]
    assert [r.idempotency_key for r in second.requests] == ["evt-77:vat_ok"]


async def test_a_non_object_answer_from_a_required_check_is_a_bad_response() -> None:
    """A 2xx answer that is not a JSON object dead-letters with upstream.bad_response."""

    class ListCaller(FakeCaller):
        async def call(self, request: UpstreamRequest) -> UpstreamResponse:
            return UpstreamResponse(status=200, body=[1, 2], latency_ms=1.0)

    outcome = await _process(_pipeline([_check("email_ok", ListCaller("email", {}))]), _record())
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason is ReasonCode.UPSTREAM_BAD_RESPONSE


async def test_a_custom_check_receives_the_validated_model_instance() -> None:
    """Through the pipeline, a custom check gets the pydantic model, not the dict."""
    custom_checks.SEEN.clear()
    config = CheckConfig(
        name="screen", upstream="email", custom="tests.support.custom_checks:posts_once"
    )
    caller = FakeCaller("email", {"ok": False, "why": "listed"})
    outcome = await _process(_pipeline([Check(config, caller)]), _record())
    assert isinstance(outcome, Invalid)
    (record,) = custom_checks.SEEN
    assert isinstance(record, RECORD_TYPES["customer.v1"])
    assert [r.json_body for r in caller.requests] == [{"email": "alice.ops@example.com"}]
    assert outcome.document.reasons[0].message == "screen: listed"


async def test_a_check_missing_a_path_value_dead_letters_the_record() -> None:
    """A path placeholder the record lacks dead-letters it as internal.error, named."""
    config = CheckConfig(
        name="vat", upstream="vat", path="/v1/vat/{vat_id}", method="GET", pass_field="ok"
    )
    data = {k: v for k, v in CUSTOMER.items() if k != "vat_id"}
    outcome = await _process(_pipeline([Check(config, FakeCaller("vat", {"ok": True}))]),
                             _record(data))  # fmt: skip
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason is ReasonCode.INTERNAL_ERROR
    assert outcome.error_class == "FieldMissingError"
    assert "vat_id has no value" in outcome.message
