"""The API guards over a real socket: a tiny FastAPI app with protect(), served by uvicorn on
127.0.0.1, asked by aiohttp. Request ids, the one error shape (validation, 404/405, 500,
504), the body limit before parsing, API keys, signatures, each rate-limit layer reaching
429, and idempotent replays and conflicts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from fastapi import FastAPI, Request
from pydantic import BaseModel, Field
from structlog.testing import capture_logs

from processor.api.auth import hash_key
from processor.api.protection import ApiProtection, protect
from processor.api.signing import sign
from processor.endpoint import EndpointServer
from processor.metrics import Metrics
from tests.support.waiting import wait_until
from tests.unit.fake_time import FakeTime

SHAPE = {"error", "message", "details", "request_id"}
SECRET = "signing-secret"


class Item(BaseModel):
    name: str = Field(max_length=10)


class Rig:
    """A served app: its base URL, how often each route ran, a gate /wait waits on."""

    def __init__(self, url: str, calls: Counter[str], gate: asyncio.Event) -> None:
        self.url = url
        self.calls = calls
        self.gate = gate


def _app(calls: Counter[str], gate: asyncio.Event) -> FastAPI:
    app = FastAPI()

    @app.post("/items")
    async def items(item: Item, request: Request) -> dict[str, Any]:
        calls["items"] += 1
        bound = structlog.contextvars.get_contextvars()
        return {"name": item.name, "call": calls["items"], "logged_id": bound.get("request_id"),
                "state_id": request.state.request_id}  # fmt: skip

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        calls["raw"] += 1  # before the body is read, let alone parsed
        return {"bytes": len(await request.body())}

    @app.post("/other")
    async def other() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("password=hunter2 at http://upstream.internal:8080/check")

    @app.get("/late")
    async def late() -> None:
        raise TimeoutError("upstream.internal did not answer")  # the route's own, not ours

    @app.post("/wait")
    async def wait() -> dict[str, bool]:
        calls["wait"] += 1
        await gate.wait()
        return {"waited": True}

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"live": True}

    return app


Serve = Callable[..., contextlib.AbstractAsyncContextManager[Rig]]


@pytest.fixture
def serve() -> Serve:
    """Serve the tiny app protected by the given settings on a free loopback port."""

    @contextlib.asynccontextmanager
    async def serving(
        settings: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_refusal: Callable[[str], None] | None = None,
    ) -> AsyncIterator[Rig]:
        calls: Counter[str] = Counter()
        gate = asyncio.Event()
        app = _app(calls, gate)
        settings_ = ApiProtection.model_validate(settings or {})
        protect(app, settings_, clock=clock, on_refusal=on_refusal)
        server = EndpointServer(app, "127.0.0.1", 0)
        await server.start()
        try:
            yield Rig(f"http://127.0.0.1:{server.port}", calls, gate)
        finally:
            gate.set()
            await server.stop()

    return serving


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client with a short timeout."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body


async def _ask(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Answer:
    async with http.request(method, url, **kwargs) as resp:
        text = await resp.text()
        body = json.loads(text) if text else None
        return Answer(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)


def _problem(answer: Answer, status: int, error: str) -> None:
    assert answer.status == status, answer.body
    assert set(answer.body) == SHAPE
    assert answer.body["error"] == error
    assert answer.body["request_id"] == answer.headers["x-request-id"]


NO_LIMITS: dict[str, Any] = {"total": None, "per_key": None, "per_endpoint": None}


# --- request ids and the error shape ----------------------------------------------------------


async def test_every_response_has_a_request_id_bound_for_the_logs(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """A fresh id on each response, the route's log context and request.state hold it; a sane
    incoming id is kept, an insane one replaced."""
    async with serve() as rig:
        first = await _ask(http, "POST", f"{rig.url}/items", json={"name": "a"})
        second = await _ask(http, "POST", f"{rig.url}/items", json={"name": "b"})
        assert first.status == 200
        assert first.body["logged_id"] == first.headers["x-request-id"]
        assert first.body["state_id"] == first.headers["x-request-id"]
        assert len(first.headers["x-request-id"]) == 32
        assert first.headers["x-request-id"] != second.headers["x-request-id"]
        kept = await _ask(http, "GET", f"{rig.url}/healthz", headers={"X-Request-ID": "trace-1:a"})
        assert kept.headers["x-request-id"] == "trace-1:a"
        odd = await _ask(http, "GET", f"{rig.url}/healthz", headers={"X-Request-ID": 'a b"<x>'})
        assert odd.headers["x-request-id"] not in ("", 'a b"<x>')


async def test_fastapi_validation_errors_come_in_the_one_shape(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """A body failing its model is 422 request.invalid, a detail per problem with its field,
    and the rejected value is not echoed."""
    async with serve() as rig:
        answer = await _ask(http, "POST", f"{rig.url}/items", json={"name": "x" * 40})
        _problem(answer, 422, "request.invalid")
        assert answer.body["details"] == [
            {"code": "string_too_long", "message": "String should have at most 10 characters",
             "field": "name"}
        ]  # fmt: skip
        assert "x" * 40 not in json.dumps(answer.body)
        assert rig.calls["items"] == 0


async def test_unknown_paths_and_methods_come_in_the_one_shape(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """404 not_found, 405 method_not_allowed with its Allow header; the refusals metric
    counts each by its code, and an answered request not at all."""
    metrics = Metrics()
    async with serve(on_refusal=metrics.api_refused) as rig:
        _problem(await _ask(http, "GET", f"{rig.url}/nowhere"), 404, "not_found")
        wrong = await _ask(http, "GET", f"{rig.url}/items")
        _problem(wrong, 405, "method_not_allowed")
        assert wrong.headers["allow"] == "POST"
        assert (await _ask(http, "GET", f"{rig.url}/healthz")).status == 200
    counted = {
        s.labels["error"]: s.value
        for family in metrics.registry.collect()
        if family.name == "processor_api_refusals"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert counted == {"not_found": 1.0, "method_not_allowed": 1.0}


async def test_an_unhandled_exception_is_a_500_without_its_text(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """The body says internal.error and nothing of the exception (no message, URL or stack); the
    log line has the exception and the request id."""
    async with serve() as rig:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            answer = await _ask(http, "GET", f"{rig.url}/boom")
        _problem(answer, 500, "internal.error")
        text = json.dumps(answer.body)
        for leak in ("hunter2", "upstream.internal", "RuntimeError", "Traceback", "boom"):
            assert leak not in text
        assert "x-ratelimit-limit" in answer.headers  # the guards' headers still go out
        [line] = [e for e in logs if e["event"] == "api.internal_error"]
        assert line["request_id"] == answer.headers["x-request-id"]
        assert line["exc_info"] is True


async def test_a_request_over_its_time_is_a_504(serve: Serve, http: aiohttp.ClientSession) -> None:
    """A route still running at timeout_s is answered 504 request.timeout; a TimeoutError of
    the route's own is an internal error, not a 504."""
    async with serve({"timeout_s": 0.2}) as rig:
        _problem(await _ask(http, "POST", f"{rig.url}/wait"), 504, "request.timeout")
        assert rig.calls["wait"] == 1
        with capture_logs() as logs:  # (and no slow pretty-printing of the stack)
            _problem(await _ask(http, "GET", f"{rig.url}/late"), 500, "internal.error")
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["api.internal_error"]


# --- the body limit -------------------------------------------------------------------------


async def test_an_oversized_body_is_refused_before_anything_parses_it(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """Over max_body_bytes, declared by Content-Length or streamed in chunks, is 413 and the
    route never runs, nor FastAPI's JSON parser; a body at the limit passes whole."""
    async with serve({"max_body_bytes": 1024}) as rig:
        declared = await _ask(http, "POST", f"{rig.url}/raw", data=b"x" * 1025)
        _problem(declared, 413, "request.too_large")

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"y" * 400

        streamed = await _ask(http, "POST", f"{rig.url}/raw", data=chunks())
        _problem(streamed, 413, "request.too_large")
        assert rig.calls["raw"] == 0
        unparsed = await _ask(http, "POST", f"{rig.url}/items", data=b"{not json" * 200,
                              headers={"Content-Type": "application/json"})  # fmt: skip
        _problem(unparsed, 413, "request.too_large")  # parsed, it would be 422 request.invalid
        fits = await _ask(http, "POST", f"{rig.url}/raw", data=b"z" * 1024)
        assert (fits.status, fits.body, rig.calls["raw"]) == (200, {"bytes": 1024}, 1)


# --- API keys and signatures ----------------------------------------------------------------


def _auth(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    keys = tmp_path / "api-keys"
    keys.write_text(f"alice:{hash_key('alice-key')}\nbob:{hash_key('bob-key')}\n")
    return {"auth": {"enabled": True, "key_hashes": {"file": str(keys)}}, **extra}


async def test_a_missing_or_unknown_key_is_refused(
    serve: Serve, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """No key: 401 auth.key_missing; a wrong key: 401 auth.key_invalid; a known key by
    either header passes; the probe path needs none."""
    async with serve(_auth(tmp_path)) as rig:
        missing = await _ask(http, "POST", f"{rig.url}/items", json={"name": "a"})
        _problem(missing, 401, "auth.key_missing")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await _ask(http, "POST", f"{rig.url}/items", json={"name": "a"},
                           headers={"X-API-Key": "mallory"})  # fmt: skip
        _problem(wrong, 401, "auth.key_invalid")
        assert rig.calls["items"] == 0
        for headers in ({"X-API-Key": "alice-key"}, {"Authorization": "Bearer bob-key"}):
            ok = await _ask(http, "POST", f"{rig.url}/items", json={"name": "a"}, headers=headers)
            assert ok.status == 200
        assert (await _ask(http, "GET", f"{rig.url}/healthz")).status == 200


async def test_a_bad_signature_is_refused_and_a_good_one_passes(
    serve: Serve, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signed over another body, unsigned, or with a stale timestamp: 401
    auth.signature_invalid before the route runs; signed right: 200."""
    monkeypatch.setenv("TEST_API_SIGNING_SECRET", SECRET)
    signing = {"enabled": True, "secret": {"env": "TEST_API_SIGNING_SECRET"}, "max_skew_s": 60}
    async with serve({"signing": signing}) as rig:
        body = b'{"name":"signed"}'
        now = str(int(time.time()))
        stale = str(int(time.time()) - 120)

        def signed(ts: str, signature: str) -> dict[str, str]:
            return {"Content-Type": "application/json", "X-Signature-Timestamp": ts,
                    "X-Signature": signature}  # fmt: skip

        refused = [
            signed(now, sign(SECRET.encode(), now, b'{"name":"other"}')),
            {"Content-Type": "application/json"},
            signed(stale, sign(SECRET.encode(), stale, body)),
        ]
        for headers in refused:
            answer = await _ask(http, "POST", f"{rig.url}/items", data=body, headers=headers)
            _problem(answer, 401, "auth.signature_invalid")
        assert rig.calls["items"] == 0
        good = signed(now, sign(SECRET.encode(), now, body))
        answer = await _ask(http, "POST", f"{rig.url}/items", data=body, headers=good)
        assert (answer.status, answer.body["name"]) == (200, "signed")


# --- rate limits ---------------------------------------------------------------------------


def _limited(answer: Answer, layer: str, limit: int, retry_after: int) -> None:
    _problem(answer, 429, "rate_limited")
    assert answer.body["details"][0]["code"] == f"rate_limited.{layer}"
    assert answer.headers["retry-after"] == str(retry_after)
    assert answer.headers["x-ratelimit-limit"] == str(limit)
    assert answer.headers["x-ratelimit-remaining"] == "0"
    assert int(answer.headers["x-ratelimit-reset"]) >= retry_after


async def test_the_global_layer_reaches_429_and_refills(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """Two requests on any paths spend a burst of 2; the third is 429 with Retry-After 10 at
    0.1/s; every answer carries the headers; ten (fake) seconds later one passes again."""
    clock = FakeTime()
    limits = {**NO_LIMITS, "total": {"rate_per_s": 0.1, "burst": 2}}
    async with serve({"rate_limits": limits}, clock=clock.clock) as rig:
        first = await _ask(http, "POST", f"{rig.url}/items", json={"name": "a"})
        assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"],
                first.headers["x-ratelimit-reset"]) == ("2", "1", "10")  # fmt: skip
        assert (await _ask(http, "POST", f"{rig.url}/other")).status == 200
        _limited(await _ask(http, "POST", f"{rig.url}/items", json={"name": "a"}), "total", 2, 10)
        assert (await _ask(http, "GET", f"{rig.url}/healthz")).status == 200  # probes exempt
        clock.advance(10)
        assert (await _ask(http, "POST", f"{rig.url}/other")).status == 200


async def test_the_per_endpoint_layer_reaches_429_for_its_route_only(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """/items spends its own burst and is refused while /other still passes; an override
    gives /other a different limit."""
    limits = {**NO_LIMITS, "per_endpoint": {"rate_per_s": 0.5, "burst": 2},
              "endpoints": {"POST /other": {"rate_per_s": 1, "burst": 3}}}  # fmt: skip
    async with serve({"rate_limits": limits}, clock=FakeTime().clock) as rig:
        for _ in range(2):
            assert (await _ask(http, "POST", f"{rig.url}/items", json={"name": "a"})).status == 200
        _limited(await _ask(http, "POST", f"{rig.url}/items", json={"name": "a"}), "endpoint", 2, 2)
        other = await _ask(http, "POST", f"{rig.url}/other")
        assert (other.status, other.headers["x-ratelimit-limit"]) == (200, "3")


async def test_the_per_key_layer_reaches_429_for_that_key_only(
    serve: Serve, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Alice spends her key's burst and is refused while Bob still passes."""
    limits = {**NO_LIMITS, "per_key": {"rate_per_s": 0.25, "burst": 2}}
    async with serve(_auth(tmp_path, rate_limits=limits), clock=FakeTime().clock) as rig:
        alice, bob = {"X-API-Key": "alice-key"}, {"X-API-Key": "bob-key"}
        for _ in range(2):
            assert (await _ask(http, "POST", f"{rig.url}/other", headers=alice)).status == 200
        _limited(await _ask(http, "POST", f"{rig.url}/other", headers=alice), "key", 2, 4)
        assert (await _ask(http, "POST", f"{rig.url}/other", headers=bob)).status == 200


# --- idempotency ------------------------------------------------------------------------


async def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """Same key and body: the stored answer (the route ran once) marked as a replay, under a
    new request id; same key, other body: 422 idempotency.key_reused."""
    async with serve() as rig:
        key = {"Idempotency-Key": "order-42"}
        first = await _ask(http, "POST", f"{rig.url}/items", json={"name": "a"}, headers=key)
        again = await _ask(http, "POST", f"{rig.url}/items", json={"name": "a"}, headers=key)
        assert (first.status, again.status) == (200, 200)
        assert again.body == first.body
        assert rig.calls["items"] == 1
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert again.headers["x-request-id"] != first.headers["x-request-id"]
        assert again.headers["content-type"] == "application/json"
        other = await _ask(http, "POST", f"{rig.url}/items", json={"name": "b"}, headers=key)
        _problem(other, 422, "idempotency.key_reused")
        fresh = await _ask(http, "POST", f"{rig.url}/items", json={"name": "b"},
                           headers={"Idempotency-Key": "order-43"})  # fmt: skip
        assert (fresh.status, rig.calls["items"]) == (200, 2)


async def test_a_key_whose_first_request_still_runs_is_a_409(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    """While the first request with a key waits, a second with that key gets 409
    idempotency.in_progress; once the first answers, the second gets its answer replayed."""
    async with serve() as rig:
        key = {"Idempotency-Key": "slow-1"}
        first = asyncio.create_task(_ask(http, "POST", f"{rig.url}/wait", headers=key))
        await wait_until(lambda: rig.calls["wait"] == 1, 5, "the first request to run")
        second = await _ask(http, "POST", f"{rig.url}/wait", headers=key)
        _problem(second, 409, "idempotency.in_progress")
        assert second.headers["retry-after"] == "1"
        rig.gate.set()
        assert (await first).status == 200
        third = await _ask(http, "POST", f"{rig.url}/wait", headers=key)
        assert (third.status, third.headers["idempotent-replayed"]) == (200, "true")
        assert rig.calls["wait"] == 1
