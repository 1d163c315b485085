"""Tests of the check language: config rules, conditions, GET/query transport, fan-out,
custom Python checks and the schema check of field paths."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from pydantic import BaseModel, ValidationError

from processor.checkplan import CheckConfig
from processor.checks import Check
from processor.config import UpstreamConfig, load_settings
from processor.custom_checks import load_custom_check, load_custom_checks
from processor.errors import (
    ConfigError,
    FieldMissingError,
    UpstreamError,
    UpstreamUnavailable,
)
from processor.upstream import UpstreamClient, UpstreamRequest, UpstreamResponse
from processor.upstream.cache import request_key
from schemas import RECORD_TYPES
from schemas.outcomes import CheckResult, CheckStatus, ReasonCode
from tests.support import custom_checks
from tests.unit.test_resilient_caller import Rig

WAIT_S = 2.0
ORDER: dict[str, Any] = {
    "order_id": "o-1",
    "customer": {"id": "c/7", "email": "a@example.com"},
    "lines": [{"sku": "A-1", "quantity": 2}, {"sku": "B 2", "quantity": 5}],
}

Answer = dict[str, Any] | UpstreamError
Script = Callable[[UpstreamRequest], Answer]


class FakeCaller:
    """A Caller answering from a function of the request, recording every request."""

    def __init__(self, answer: Answer | Script, name: str = "stock") -> None:
        self.name = name
        self._answer = answer
        self.requests: list[UpstreamRequest] = []

    async def call(self, request: UpstreamRequest) -> UpstreamResponse:
        self.requests.append(request)
        answer = self._answer(request) if callable(self._answer) else self._answer
        if isinstance(answer, UpstreamError):
            raise answer
        return UpstreamResponse(status=200, body=answer, latency_ms=1.0)


def _config(**fields: Any) -> CheckConfig:
    base: dict[str, Any] = {"name": "stock", "upstream": "stock", "path": "/v1/check"}
    if "custom" in fields:
        base.pop("path")
    elif "pass_when" not in fields:
        base["pass_field"] = "ok"
    return CheckConfig.model_validate({**base, **fields})


async def _run(check: Check, data: dict[str, Any] = ORDER, record: Any = None) -> CheckResult:
    return await asyncio.wait_for(check.run("rec-1", data, record), WAIT_S)


# --- config rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pass_field": "ok", "pass_when": {"field": "ok", "op": "present"}}, "two forms"),
        ({"pass_equals": False, "pass_when": {"field": "ok", "op": "present"}}, "two forms"),
        ({"pass_field": None}, "needs pass_when or pass_field"),
        ({"custom": "pkg.mod:fn", "body": {"e": "email"}}, "custom check takes no body"),
        ({"custom": "pkg.mod:fn", "path": "/v1/x"}, "custom check takes no path"),
        ({"custom": "pkg.mod:fn", "pass_field": "ok"}, "custom check takes no pass_field"),
        ({"custom": "pkg.mod"}, "pattern"),
        ({"path": None}, "path is required"),
        ({"body": {"email": "customer..email"}}, "body.email: field path"),
        ({"query": {"sku": "lines[x]"}}, "query.sku: field path"),
        ({"path": "/v1/stock/{sku"}, "path: path template"),
        ({"path": "/v1/stock/{lines[*].sku}"}, "one value"),
        ({"method": "GET", "body": {"email": "email"}}, "GET sends no body"),
        ({"for_each": "orders[*].lines"}, "for_each: .* one value"),
        ({"max_items": 5}, "max_items needs for_each"),
        ({"pass_field": "items[*].ok"}, "pass_field: .* one value"),
        ({"reason_field": "why.."}, "reason_field: field path"),
        ({"when_present": "a b"}, "when_present: field path"),
        ({"pass_when": {"field": "n", "op": "gte", "value": "three"}}, "needs a number"),
        ({"pass_when": {"field": "n", "op": "in", "value": "a"}}, "needs a list"),
        ({"pass_when": {"field": "n", "op": "equals"}}, "needs value or value_field"),
        ({"pass_when": {"field": "n", "op": "lt", "value": 1, "value_field": "m"}}, "exactly one"),
        ({"pass_when": {"field": "n", "op": "present", "value": 1}}, "takes no value"),
        ({"pass_when": {"field": "n", "op": "matches", "value": 1}}, "op"),
    ],
)
def test_contradictory_or_malformed_checks_are_config_errors(
    fields: dict[str, Any], message: str
) -> None:
    """Each rule of the check grammar is enforced when the config is read."""
    with pytest.raises(ValidationError, match=message):
        _config(**fields)


def test_todays_check_keys_still_compile() -> None:
    """body/pass_field/pass_equals/reason_field/when_present/required/method/path all work."""
    cfg = _config(
        method="POST", body={"email": "email"}, pass_field="hit", pass_equals=False,
        reason_field="list", when_present="email", required=False,
    )  # fmt: skip
    assert cfg.plan.condition.op == "equals"
    assert cfg.plan.condition.value is False


def test_a_bad_check_in_the_config_file_names_its_key(tmp_path: Path) -> None:
    """Through load_settings, a check error is a ConfigError naming the check's key."""
    config = {
        "upstreams": {"email": {"base_url": "http://127.0.0.1:9"}},
        "checks": {"customer.v1": [{
            "name": "email_ok", "upstream": "email", "path": "/v1/x",
            "body": {"email": "email"}, "pass_field": "ok",
            "pass_when": {"field": "ok", "op": "present"},
        }]},
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"checks\.customer\.v1\[0\]: .*two forms"):
        load_settings(path)


class Line(BaseModel):
    sku: str
    quantity: int


class Order(BaseModel):
    order_id: str
    email: str | None = None
    lines: list[Line]


def test_record_paths_are_checked_against_the_record_schema() -> None:
    """Every record path (item paths under for_each included) is checked, with its key."""
    cfg = _config(
        path="/v1/stock/{item.sku}", query={"n": "item.qty", "o": "order_id"},
        for_each="lines", when_present="mail",
        pass_when={"field": "available", "op": "gte", "value_field": "item.quantity"},
    )  # fmt: skip
    assert cfg.schema_problems(Order.model_json_schema()) == [
        "when_present: mail: no field 'mail'",
        "query.n: lines[*].qty: lines[*] has no field 'qty'",
    ]
    email = _config(body={"email": "email"}, when_present="vat_id")
    assert email.schema_problems(RECORD_TYPES["customer.v1"].model_json_schema()) == []


# --- conditions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "answer", "passes"),
    [
        ("equals", "ok", "ok", True),
        ("equals", "ok", "ko", False),
        ("not_equals", 0, 1, True),
        ("not_equals", 0, 0, False),
        ("in", ["a", "b"], "b", True),
        ("in", ["a", "b"], "c", False),
        ("gte", 3, 3, True),
        ("gte", 3, 2.5, False),
        ("gt", 3, 3, False),
        ("gt", 3, 4, True),
        ("lte", 3, 3, True),
        ("lte", 3, 4, False),
        ("lt", 3, 2, True),
        ("lt", 3, 3, False),
        ("gte", 1, "5", False),
        ("gte", 1, True, False),
        ("gte", 1, None, False),
        ("present", None, 0, True),
        ("present", None, None, False),
    ],
)
async def test_each_operator_judges_a_nested_answer_field(
    op: str, value: Any, answer: Any, passes: bool
) -> None:
    """pass_when compares a nested response field with each operator; non-numbers fail."""
    rule: dict[str, Any] = {"field": "stock.available", "op": op}
    if op != "present":
        rule["value"] = value
    caller = FakeCaller({"stock": {"available": answer}})
    result = await _run(Check(_config(pass_when=rule), caller))
    assert result.status is (CheckStatus.PASSED if passes else CheckStatus.FAILED)


async def test_an_absent_answer_field_fails_and_the_message_says_so() -> None:
    """A missing nested field does not pass; the rejection names field, value and rule."""
    check = Check(_config(pass_when={"field": "stock.available", "op": "gte", "value": 2}),
                  FakeCaller({"stock": {}}))  # fmt: skip
    result = await _run(check)
    assert result.status is CheckStatus.FAILED
    assert check.rejection_message(result) == "stock: stock.available is None, expected >= 2"


async def test_value_field_compares_against_the_record_and_a_nested_reason_explains() -> None:
    """value_field reads the record; a nested reason_field is kept and used as the reason."""
    cfg = _config(
        pass_when={"field": "stock.available", "op": "gte", "value_field": "lines[1].quantity"},
        reason_field="stock.note",
    )
    check = Check(cfg, FakeCaller({"stock": {"available": 3, "note": "only 3 left"}}))
    result = await _run(check)
    assert result.status is CheckStatus.FAILED
    assert result.evidence == {
        "lines[1].quantity": 5, "stock.available": 3, "stock.note": "only 3 left",
    }  # fmt: skip
    assert check.rejection_message(result) == "stock: only 3 left"


async def test_a_missing_value_field_is_a_field_missing_error() -> None:
    """Comparing against a record value that is absent raises FieldMissingError."""
    check = Check(_config(pass_when={"field": "n", "op": "lt", "value_field": "limit"}),
                  FakeCaller({"n": 1}))  # fmt: skip
    with pytest.raises(FieldMissingError, match="limit"):
        await _run(check)


# --- requests: templates, query, GET without body, over real HTTP ------------------------


Seen = list[dict[str, Any]]


@pytest.fixture
async def stock_api() -> AsyncIterator[tuple[str, Seen]]:
    """A real aiohttp server on 127.0.0.1 that records each request and answers in stock."""
    seen: Seen = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append({
            "method": request.method, "raw_path": request.raw_path,
            "query": list(request.query.items()), "body": body,
            "key": request.headers.get("Idempotency-Key"),
            "content_type": request.headers.get("Content-Type"),
        })  # fmt: skip
        return web.json_response({"stock": {"available": 4}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_a_get_sends_templated_path_and_query_and_no_body(
    stock_api: tuple[str, Seen],
) -> None:
    """GET renders the path, sends query params (lists repeated) and no body at all."""
    url, seen = stock_api
    cfg = _config(
        method="GET", path="/v1/customers/{customer.id}/stock/{lines[1].sku}",
        query={"email": "customer.email", "sku": "lines[*].sku", "none": "missing"},
        pass_when={"field": "stock.available", "op": "gte", "value": 1},
    )  # fmt: skip
    async with aiohttp.ClientSession() as session:
        client = UpstreamClient("stock", UpstreamConfig(base_url=url), session)
        result = await _run(Check(cfg, client))
    assert result.status is CheckStatus.PASSED
    assert seen == [{
        "method": "GET", "raw_path": "/v1/customers/c%2F7/stock/B%202"
        "?email=a@example.com&sku=A-1&sku=B+2",
        "query": [("email", "a@example.com"), ("sku", "A-1"), ("sku", "B 2")],
        "body": b"", "key": "rec-1:stock", "content_type": None,
    }]  # fmt: skip


async def test_a_post_sends_nested_values_in_its_json_body(stock_api: tuple[str, Seen]) -> None:
    """POST bodies take nested and [*] paths; an absent value is sent as null."""
    url, seen = stock_api
    cfg = _config(
        body={"email": "customer.email", "skus": "lines[*].sku", "note": "note"},
        pass_when={"field": "stock.available", "op": "present"},
    )
    async with aiohttp.ClientSession() as session:
        client = UpstreamClient("stock", UpstreamConfig(base_url=url), session)
        result = await _run(Check(cfg, client))
    assert result.status is CheckStatus.PASSED
    assert json.loads(seen[0]["body"]) == {
        "email": "a@example.com", "skus": ["A-1", "B 2"], "note": None,
    }  # fmt: skip


async def test_a_missing_path_value_is_a_field_missing_error() -> None:
    """A template placeholder with no value raises before any call is made."""
    caller = FakeCaller({"ok": True})
    with pytest.raises(FieldMissingError, match=r"customer\.phone"):
        await _run(Check(_config(path="/v1/{customer.phone}"), caller))
    assert caller.requests == []


def test_the_cache_key_includes_the_query() -> None:
    """Two GETs differing only in their query are different answers."""
    first = UpstreamRequest("GET", "/v1/stock", None, "k", (("sku", "A"),))
    second = UpstreamRequest("GET", "/v1/stock", None, "k", (("sku", "B"),))
    assert request_key(first) != request_key(second)
    assert request_key(first) == request_key(UpstreamRequest("GET", "/v1/stock", None, "j",
                                                             (("sku", "A"),)))  # fmt: skip


# --- fan-out ---------------------------------------------------------------------------


def _stock(levels: dict[str, int | UpstreamError]) -> Script:
    def answer(request: UpstreamRequest) -> Answer:
        level = levels[request.path.rsplit("/", 1)[1]]
        return level if isinstance(level, UpstreamError) else {"available": level}

    return answer


def _fan_out(**fields: Any) -> CheckConfig:
    return _config(
        method="GET", path="/v1/stock/{item.sku}", query={"order": "order_id"},
        for_each="lines", reason_field="why",
        pass_when={"field": "available", "op": "gte", "value_field": "item.quantity"},
        **fields,
    )  # fmt: skip


async def test_fan_out_makes_one_call_per_item_and_one_failing_item_fails_the_record() -> None:
    """Each item is called with its own key; item 1 is short, so the check fails."""
    caller = FakeCaller(_stock({"A-1": 9, "B%202": 3}))
    check = Check(_fan_out(), caller)
    result = await _run(check)
    assert sorted((r.path, r.query, r.idempotency_key) for r in caller.requests) == [
        ("/v1/stock/A-1", (("order", "o-1"),), "rec-1:stock:0"),
        ("/v1/stock/B%202", (("order", "o-1"),), "rec-1:stock:1"),
    ]
    assert result.status is CheckStatus.FAILED
    assert result.evidence == {"items_total": 2, "items": [
        {"index": 0, "status": "passed", "available": 9, "item.quantity": 2},
        {"index": 1, "status": "failed", "available": 3, "item.quantity": 5},
    ]}  # fmt: skip
    expected = "stock: item 1: available is 3, expected >= item.quantity (5)"
    assert check.rejection_message(result) == expected


async def test_fan_out_passes_when_every_item_passes() -> None:
    """All items in stock: the check passes, attempts summed over the calls."""
    result = await _run(Check(_fan_out(), FakeCaller(_stock({"A-1": 9, "B%202": 9}))))
    assert result.status is CheckStatus.PASSED
    assert result.attempts == 2
    assert [e["status"] for e in result.evidence["items"]] == ["passed", "passed"]  # type: ignore[index]


async def test_more_items_than_max_items_fail_without_calling() -> None:
    """A list longer than max_items is a clear "no" with the limit named, and no calls."""
    caller = FakeCaller({"available": 9})
    check = Check(_fan_out(max_items=1), caller)
    result = await _run(check)
    assert result.status is CheckStatus.FAILED
    assert caller.requests == []
    assert check.rejection_message(result) == "stock: lines has 2 items, more than max_items 1"


async def test_an_empty_item_list_skips_the_check() -> None:
    """No items, no calls: the check is skipped."""
    caller = FakeCaller({"available": 9})
    result = await _run(Check(_fan_out(), caller), {**ORDER, "lines": []})
    assert result.status is CheckStatus.SKIPPED
    assert caller.requests == []


async def test_an_item_the_upstream_cannot_answer_dead_letters_a_required_check() -> None:
    """No item failed and one could not be checked: a required check raises its error."""
    down = UpstreamUnavailable("stock: HTTP 503", upstream="stock", status=503)
    with pytest.raises(UpstreamUnavailable):
        await _run(Check(_fan_out(), FakeCaller(_stock({"A-1": 9, "B%202": down}))))


async def test_a_failing_item_wins_over_an_unanswered_one_and_optional_is_unverified() -> None:
    """A clear "no" on one item beats an error on another; optional errors are unverified."""
    down = UpstreamUnavailable("stock: HTTP 503", upstream="stock", status=503)
    failed = await _run(Check(_fan_out(), FakeCaller(_stock({"A-1": 0, "B%202": down}))))
    assert failed.status is CheckStatus.FAILED
    assert failed.evidence["items"][1]["error"] == "upstream.unavailable"  # type: ignore[index]
    optional = Check(_fan_out(required=False), FakeCaller(_stock({"A-1": 9, "B%202": down})))
    assert (await _run(optional)).status is CheckStatus.UNVERIFIED


# --- custom checks ---------------------------------------------------------------------


def _custom(fn: str, **fields: Any) -> CheckConfig:
    return _config(custom=f"tests.support.custom_checks:{fn}", **fields)


@pytest.fixture(autouse=True)
def _forget_seen_records() -> None:
    custom_checks.SEEN.clear()


async def test_a_custom_check_calls_through_the_caller_with_derived_keys() -> None:
    """Its GETs reach the caller with query params, no body and record:check:index keys."""
    caller = FakeCaller({"available": True})
    result = await _run(Check(_custom("stock_by_get"), caller), record="the-model")
    assert custom_checks.SEEN == ["the-model"]
    sent = [(r.method, r.path, r.query, r.json_body, r.idempotency_key) for r in caller.requests]
    assert sent == [
        ("GET", "/v1/stock/A-1", (("warehouse", "eu"), ("qty", "2")), None, "rec-1:stock:0"),
        ("GET", "/v1/stock/B-2", (("tag", "x"), ("tag", "y")), None, "rec-1:stock:1"),
    ]  # fmt: skip
    assert result.status is CheckStatus.PASSED
    assert result.attempts == 2
    assert result.evidence is not None
    assert len(result.evidence["note"]) == 259  # bounded: 256 characters and "..."


async def test_a_custom_rejection_is_a_failed_check_with_its_reason() -> None:
    """Rejected(reason=...) fails the check; the reason is the rejection message."""
    check = Check(_custom("stock_by_get"), FakeCaller({"available": False}))
    result = await _run(check)
    assert result.status is CheckStatus.FAILED
    assert result.evidence == {"short": ["B-2"], "reason": "out of stock: B-2"}
    assert check.rejection_message(result) == "stock: out of stock: B-2"


async def test_a_custom_check_raising_unavailable_maps_to_its_reason_code() -> None:
    """UpstreamUnavailable propagates from a required check; an optional one is unverified."""
    with pytest.raises(UpstreamUnavailable) as caught:
        await _run(Check(_custom("always_unavailable"), FakeCaller({})))
    assert caught.value.reason is ReasonCode.UPSTREAM_UNAVAILABLE
    optional = await _run(Check(_custom("always_unavailable", required=False), FakeCaller({})))
    assert optional.status is CheckStatus.UNVERIFIED
    assert optional.evidence == {"error": "upstream.unavailable", "message": "stock: HTTP 503"}


async def test_a_custom_check_returning_no_verdict_is_an_error() -> None:
    """Anything but Passed/Rejected raises TypeError (the pipeline dead-letters it)."""
    with pytest.raises(TypeError, match=r"not processor\.sdk\.Passed or Rejected"):
        await _run(Check(_custom("returns_garbage"), FakeCaller({})))


async def test_a_custom_check_gets_the_resilience_of_the_resilient_caller() -> None:
    """Through a real ResilientCaller, a 503 is retried and a repeated call is cached."""
    ok = UpstreamResponse(status=200, body={"available": True}, latency_ms=1.0)
    down = UpstreamUnavailable("stock: HTTP 503", upstream="stock", status=503)
    rig = Rig([down, ok, ok])
    check = Check(_custom("stock_by_get"), rig.caller)
    first = await _run(check)
    again = await _run(check)
    assert first.attempts == 3  # 2 for the retried first call, 1 for the second
    assert again.attempts == 0  # both answers from the cache
    assert len(rig.transport.requests) == 3
    assert rig.observer.of("cache") == ["miss", "miss", "hit", "hit"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.support.no_such_module:check", "cannot import 'tests.support.no_such_module'"),
        ("tests.support.custom_checks:missing", "has no attribute 'missing'"),
        ("tests.support.custom_checks:not_async", "not an async callable"),
        ("tests.support.custom_checks:NOT_CALLABLE", "not an async callable"),
        ("tests.support.custom_checks", "not of the form"),
    ],
)
def test_a_custom_check_that_cannot_be_loaded_is_a_config_error(target: str, message: str) -> None:
    """Import failures and non-async targets are ConfigErrors naming the key."""
    with pytest.raises(ConfigError, match=f"checks.order.v1.0.custom: .*{message}"):
        load_custom_check(target, "checks.order.v1.0.custom")


def test_custom_checks_are_loaded_from_the_config_with_the_key_named() -> None:
    """load_custom_checks imports every custom check once and names a failing one's key."""
    good = _custom("callable_object")
    loaded = load_custom_checks({"order.v1": [_config(), good]})
    assert list(loaded) == ["tests.support.custom_checks:callable_object"]
    with pytest.raises(ConfigError, match=r"checks\.order\.v1\.1\.custom \(stock\)"):
        load_custom_checks({"order.v1": [good, _custom("not_async")]})
