"""The outcome document's fast path (plain data through orjson) writes the bytes pydantic writes."""

from __future__ import annotations

import asyncio
import json
import math
import random
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema_rs
import orjson
import pytest
from pydantic import ValidationError

from devtools.corpus import build_corpus
from devtools.hostile import MAX_RECORD_BYTES, hostile_corpus
from processor.checkplan import CheckConfig
from processor.checks import Check
from processor.config import TopicsConfig, ValidationConfig
from processor.documents import OutcomeData
from processor.errors import UpstreamTimeout, UpstreamUnavailable
from processor.inputs import Record
from processor.outcomes import DeadLetter, Invalid, OutcomePublisher, Valid
from processor.pipeline import Pipeline
from processor.record_types import PydanticRecordType, RecordTypes
from processor.upstream import UpstreamRequest, UpstreamResponse
from schemas import RECORD_TYPES
from schemas.export import SNAPSHOT_DIR
from schemas.outcomes import (
    CheckResult,
    CheckStatus,
    InputCoordinates,
    OutcomeDocument,
    ProcessorInfo,
    Reason,
    ReasonCode,
    Timing,
    Verdict,
)

INFO = ProcessorInfo(name="record-processor", version="1.2.3", instance="host-1/0")
TOPICS = TopicsConfig(input="in", valid="v", invalid="i", dead_letter="d")
SNAPSHOT = json.loads((SNAPSHOT_DIR / "outcome.v1.serialization.json").read_text())
VALIDATOR = jsonschema_rs.validator_for(SNAPSHOT)
PASSED = CheckResult(
    name="c", upstream="u", status=CheckStatus.PASSED, required=True, attempts=1, latency_ms=1.0
)
ZONES = (UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), None)


def _text(rng: random.Random) -> str:
    """Short text from the characters JSON encoders treat differently."""
    alphabet = 'aZ09 "\\/\b\f\n\r\t\x00\x1f\x7f\u00e9\u2028\u2029\u200f\ufeff\U0001f600'
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))


def _number(rng: random.Random) -> int | float:
    return rng.choice((
        rng.randrange(-(2**53), 2**53), 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1,
        10**30, 0, -1,
        rng.random(), -rng.random() * 1e-300, rng.uniform(-1e308, 1e308), 1e16, 1e-7, 0.1 + 0.2,
        -0.0, 5e-324, 1.7976931348623157e308, 123456789.0, float(rng.randrange(10**6)),
        math.nan, math.inf, -math.inf,
    ))  # fmt: skip


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value (as json.loads makes them), with the edge cases that matter."""
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return _text(rng)
    if kind == 1:
        return _number(rng)
    if kind == 2:
        return rng.choice((True, False, None))
    if kind == 3:
        return rng.randrange(-1000, 1000)
    if kind in (4, 5):
        return {_text(rng): _json_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [_json_value(rng, depth + 1) for _ in range(rng.randrange(5))]


def _object(rng: random.Random) -> dict[str, Any]:
    return {_text(rng) or "k": _json_value(rng, 1) for _ in range(rng.randrange(1, 6))}


def _when(rng: random.Random) -> datetime:
    return datetime(
        rng.randrange(1970, 2100), rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(24),
        rng.randrange(60), rng.randrange(60), rng.choice((0, 1, 500_000, rng.randrange(10**6))),
        tzinfo=rng.choice(ZONES),
    )  # fmt: skip


def _values(rng: random.Random) -> dict[str, Any]:
    """The values of one outcome document, random where the contract allows."""
    checks = [
        CheckResult(
            name=f"check_{i}",
            upstream=rng.choice(("email", "vat", "\u00fcber")),
            status=rng.choice(list(CheckStatus)),
            required=rng.random() < 0.5,
            attempts=rng.randrange(5),
            latency_ms=rng.choice((0, 3, rng.random() * 500)),
            http_status=rng.choice((None, 200, 503)),
            evidence=rng.choice((None, {}, _object(rng))),
        )
        for i in range(rng.randrange(4))
    ]
    reasons = [
        Reason(
            code=rng.choice(list(ReasonCode)),
            message=_text(rng),
            field=rng.choice((None, "email", _text(rng))),
            check=rng.choice((None, "check_0")),
        )
        for _ in range(rng.randrange(4))
    ]
    invalid = rng.random() < 0.5
    return {
        "outcome": "invalid" if invalid else "valid",
        "verdict": Verdict.INVALID if invalid else rng.choice(list(Verdict)),
        "record_id": _text(rng) or "id", "record_type": "customer.v1", "source": "/crm",
        "reasons": reasons, "checks": checks, "event": _object(rng),
        "normalized_data": rng.choice((None, _object(rng))),
        "unknown_fields": rng.choice((None, _object(rng))),
        "topic": "records.in", "partition": rng.randrange(64), "offset": rng.randrange(2**40),
        "timestamp_ms": rng.choice((None, rng.randrange(2**41))),
        "key": rng.choice((None, "", _text(rng))),
        "processor": INFO, "received_at": _when(rng), "completed_at": _when(rng),
        "duration_ms": round(rng.random() * 100, 3),
    }  # fmt: skip


def _model(values: dict[str, Any]) -> OutcomeDocument:
    """The document as the pipeline built it before the fast path: validated pydantic models."""
    return OutcomeDocument(
        outcome=values["outcome"], verdict=values["verdict"], record_id=values["record_id"],
        record_type=values["record_type"], source=values["source"], reasons=values["reasons"],
        checks=values["checks"], event=values["event"],
        normalized_data=values["normalized_data"], unknown_fields=values["unknown_fields"],
        input=InputCoordinates(
            topic=values["topic"], partition=values["partition"], offset=values["offset"],
            timestamp_ms=values["timestamp_ms"], key=values["key"],
        ),
        processor=values["processor"],
        timing=Timing(received_at=values["received_at"], completed_at=values["completed_at"],
                      duration_ms=values["duration_ms"]),
    )  # fmt: skip


def _pydantic_bytes(model: OutcomeDocument) -> bytes | type[ValueError]:
    try:
        return model.model_dump_json().encode()
    except ValueError:
        return ValueError


def _fast_bytes(data: OutcomeData) -> bytes | type[ValueError]:
    try:
        return data.json()
    except ValueError:
        return ValueError


def test_random_documents_encode_to_the_bytes_pydantic_writes() -> None:
    """1,500 random documents (text escapes, big and odd numbers, NaN, nesting, time zones):
    the fast encoding is byte for byte pydantic's, and its model equals pydantic's."""
    rng = random.Random(15)
    big = 0
    for _ in range(1_500):
        values = _values(rng)
        expected = _model(values)
        data = OutcomeData.build(**values)
        assert _fast_bytes(data) == _pydantic_bytes(expected)
        assert data.model == expected
        try:
            orjson.dumps(data.fields, option=orjson.OPT_UTC_Z)
        except orjson.JSONEncodeError:
            big += 1  # went the pydantic way: an integer past 64 bits
    assert 0 < big < 1_500  # both ways were taken


def test_nesting_past_orjsons_limit_is_written_by_pydantic() -> None:
    """An event nested deeper than orjson goes (600 levels) is written as pydantic writes it."""
    nested: Any = []
    for _ in range(600):
        nested = [nested]
    values = {**_values(random.Random(5)), "event": {"data": nested}}
    assert _fast_bytes(OutcomeData.build(**values)) == _pydantic_bytes(_model(values))


def test_a_lone_surrogate_fails_with_value_error_both_ways() -> None:
    """Text that is not valid Unicode fails the fast encoding as it failed pydantic's."""
    values = _values(random.Random(1))
    values["event"] = {"name": "a\udc80b"}
    assert _pydantic_bytes(_model(values)) is ValueError
    assert _fast_bytes(OutcomeData.build(**values)) is ValueError


@pytest.mark.parametrize(
    "change",
    [
        {"record_id": "x" * 257},
        {"source": "s" * 2049},
        {"offset": -1},
        {"partition": -1},
        {"duration_ms": -0.5},
        {"checks": [PASSED] * 65},
        {"reasons": [Reason(code=ReasonCode.SCHEMA_INVALID, message="m")] * 257},
    ],
)
def test_values_the_model_refuses_are_refused_as_before(change: dict[str, Any]) -> None:
    """A value out of the contract raises the model's ValidationError, as building it did."""
    values = {**_values(random.Random(2)), **change}
    with pytest.raises(ValidationError):
        _model(values)
    with pytest.raises(ValidationError):
        OutcomeData.build(**values)


def test_the_plain_fields_follow_the_models_field_order() -> None:
    """Keys are in the model's declaration order, at every level (pydantic's byte order)."""
    data = OutcomeData.build(**_values(random.Random(3)))
    assert list(data.fields) == list(OutcomeDocument.model_fields)
    for name, model in (("input", InputCoordinates), ("timing", Timing)):
        assert list(data.fields[name]) == list(model.model_fields)


def test_an_outcome_from_a_model_keeps_that_model() -> None:
    """``Valid(model).document`` is the model given; its plain data encodes to its bytes."""
    model = _model(_values(random.Random(4)))
    outcome = Valid(model)
    assert outcome.document is model
    assert outcome.data.json() == model.model_dump_json().encode()
    assert outcome == Valid(OutcomeData.of(model))
    assert outcome != Invalid(model)


class ScriptedUpstream:
    """An upstream caller whose answer the request decides: yes with evidence, no, or down."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def call(self, request: UpstreamRequest) -> UpstreamResponse:
        roll = zlib.crc32(f"{self.name}:{request.idempotency_key}".encode()) % 10
        if roll == 0:
            raise UpstreamUnavailable("HTTP 503", upstream=self.name, status=503)
        if roll == 1:
            raise UpstreamTimeout("no answer in 2s", upstream=self.name)
        if roll == 2:
            return UpstreamResponse(200, {"ok": False, "why": 'listed: "\u00fc" \u2028'}, 4.25)
        why = _json_value(random.Random(roll), 1)
        return UpstreamResponse(200, {"ok": True, "why": why}, latency_ms=roll * 1.7)


def _check(name: str, required: bool, field: str) -> Check:
    config = CheckConfig(name=name, upstream=name, path=f"/v1/{name}", body={"value": field},
                         pass_field="ok", reason_field="why", required=required)  # fmt: skip
    return Check(config, ScriptedUpstream(name))


class CapturingProducer:
    """Acknowledges every record at once and keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, list[tuple[str, bytes]]]] = []

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None,
        partition: int | None = None, timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:  # fmt: skip
        self.sent.append((topic, value, list(headers or [])))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_corpora_publish_pydantics_bytes_for_every_outcome_kind() -> None:
    """The demo and hostile corpora through checks that pass, reject, time out or fail: every
    valid and invalid outcome is published as pydantic's bytes of a document that validates
    against the committed JSON Schema; dead letters keep the input's bytes."""
    types = RecordTypes([PydanticRecordType(n, m) for n, m in RECORD_TYPES.items()])
    checks = {
        "customer.v1": [_check("email", True, "email"), _check("vat", False, "vat_id")],
        "transfer.v1": [_check("sanctions", True, "amount")],
    }
    pipeline = Pipeline(
        record_types=types, checks=checks, validation=ValidationConfig(unknown_fields="keep"),
        max_record_bytes=MAX_RECORD_BYTES, processor=INFO,
    )  # fmt: skip
    producer = CapturingProducer()
    publisher = OutcomePublisher(producer, TOPICS, "p/t")
    records = [
        Record("in", 3, i, 1_700_000_000_000, c.key, c.value, c.headers)
        for i, c in enumerate(build_corpus(600, seed=15))
    ] + [
        Record("in", 0, i, 0, h.key, h.value, h.headers)  # type: ignore[arg-type]
        for i, h in enumerate(hostile_corpus(600, seed=15))
    ]
    kinds: Counter[str] = Counter()
    for record in records:
        outcome = await pipeline.process(record)
        await publisher.publish(record, outcome)
        topic, value, _ = producer.sent[-1]
        if isinstance(outcome, DeadLetter):
            kinds[f"dead-letter {outcome.reason.value}"] += 1
            assert topic == "d"
            assert value in (record.value, b"")  # b"": too large to keep
            continue
        expected = _pydantic_bytes(outcome.document)
        if expected is ValueError:  # not valid Unicode: a fallback dead letter, as before
            assert _fast_bytes(outcome.data) is ValueError
            assert (topic, value) == ("d", b"")
            kinds["fallback"] += 1
            continue
        assert value == expected
        assert orjson.loads(value) == outcome.document.model_dump(mode="json")
        assert VALIDATOR.is_valid(orjson.loads(value))
        reasons = {r.code.value for r in outcome.document.reasons} or {"ok"}
        kinds.update(f"{outcome.document.verdict.value} {code}" for code in reasons)
        kinds["with evidence"] += any(c.evidence for c in outcome.document.checks)
    assert {
        "valid ok", "valid_unverified upstream.unverified", "invalid schema.invalid",
        "invalid upstream.rejected", "dead-letter decode.failed", "dead-letter type.unknown",
        "dead-letter upstream.unavailable", "dead-letter upstream.timeout", "with evidence",
    } <= set(kinds), kinds  # fmt: skip
