"""The validation API over real sockets against the upstream simulator and the session broker:
the same verdicts through every front door, an outage's error shape, the batch deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from devtools.corpus import bench_records, build_corpus
from devtools.reconcile import OutcomeCollector, publish_corpus
from devtools.simulator import start_simulator
from devtools.simulator.verdicts import SimulatorSettings
from processor.api.app import ApiRunner
from processor.api.auth import hash_key
from processor.api.idempotency import REPLAY_HEADER
from processor.api.protection import ApiProtection
from processor.api.signing import sign
from processor.config import ApiConfig, Settings
from tests.support.api import (
    JSON,
    TIMEOUT,
    batch_item,
    item_verdict,
    post,
    post_in_chunks,
    structured_body,
    validate_each,
)
from tests.support.services import simulator_process
from tests.support.setup import create_topics, running_app, settings_for, unique_topics
from tests.support.sim import SimControl
from tests.support.waiting import wait_until


def _with_api(settings: Settings, **api: Any) -> Settings:
    return settings.model_copy(update={"api": ApiConfig(enabled=True, port=0, **api)})


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[str, ApiRunner]]:
    """``processor serve`` in this event loop; yields the API's base URL and the runner,
    stops it on exit."""
    runner = ApiRunner(settings)
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(lambda: runner.port is not None or task.done(), 30, "the API listening")
        assert runner.port is not None, task
        yield f"http://127.0.0.1:{runner.port}", runner
    finally:
        runner.request_stop()
        assert await asyncio.wait_for(task, 30) == 0


async def test_the_same_records_get_the_same_verdicts_through_every_front_door(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """2,000 mixed records get the expected verdict and reason code through /v1/validate,
    /v1/validate/batch, and /v1/records followed by the stream processor of the same process."""
    topics = unique_topics("api-parity")
    await create_topics(kafka_bootstrap, topics, partitions=2)
    corpus = build_corpus(2_000, keys=25, seed=14)
    expected = [(r.expected_topic, r.expected_reason) for r in corpus]
    items = [batch_item(r) for r in corpus]
    settings = _with_api(settings_for(tmp_path, kafka_bootstrap, simulator_url, topics))
    collector = OutcomeCollector(kafka_bootstrap, topics)
    async with running_app(settings) as app, aiohttp.ClientSession(timeout=TIMEOUT) as http:
        await wait_until(lambda: app.api_port is not None, 30, "the API listening")
        base = f"http://127.0.0.1:{app.api_port}"
        published, one_by_one, batches = await asyncio.gather(  # the three doors at once
            post_in_chunks(http, f"{base}/v1/records", items, 500),
            validate_each(http, base, corpus),
            post_in_chunks(http, f"{base}/v1/validate/batch", items, 500),
        )
        assert [status for status, _ in published] == [202] * 4
        coords = [(p["partition"], p["offset"]) for _, body in published for p in body["records"]]
        assert [status for status, _ in batches] == [200] * 4
        in_batches = [item_verdict(item) for _, body in batches for item in body["items"]]
        assert await collector.collect(set(coords), timeout_s=60)
    streamed = [(collector.seen[c][0].kind, collector.seen[c][0].reason) for c in coords]
    assert len(set(expected)) == 7  # every kind of verdict the corpus makes
    assert one_by_one == expected
    assert in_batches == expected
    assert streamed == expected


def _outage_settings(
    tmp_path: Path, bootstrap: str, url: str, **api: Any
) -> Settings:  # every upstream at ``url``: two attempts, a breaker that opens after two failures
    fast = {
        "retry": {"max_attempts": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.02},
        "breaker": {"consecutive_failures": 2, "open_s": 30.0},
    }
    upstreams = {name: fast for name in ("email", "vat", "sanctions")}
    topics = unique_topics("api")
    return _with_api(settings_for(tmp_path, bootstrap, url, topics, upstreams=upstreams), **api)


async def test_an_upstream_outage_is_the_documented_error_shape_without_internals(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """While every upstream answers 503 a record gets 503 upstream.unavailable in the one error
    shape (no exception text, stack or upstream URL); once the breaker opens, at once with
    Retry-After."""
    sim = await start_simulator(SimulatorSettings(outage_windows=((0.0, 3600.0),)))
    record = next(r for r in build_corpus(50, seed=3) if r.label == "customer.v1.valid.structured")
    try:
        settings = _outage_settings(tmp_path, kafka_bootstrap, sim.url)
        async with (
            serving(settings) as (base, _runner),
            aiohttp.ClientSession(timeout=TIMEOUT) as http,
        ):
            answers = [await post(http, f"{base}/v1/validate", record.value or b"")
                       for _ in range(2)]  # fmt: skip
            started = time.monotonic()
            status, body, headers = await post(http, f"{base}/v1/validate", record.value or b"")
            refused_in_s = time.monotonic() - started
    finally:
        await sim.close()
    for status_, body_, headers_ in [*answers, (status, body, headers)]:
        assert status_ == 503
        assert set(body_) == {"error", "message", "details", "request_id"}
        assert body_["request_id"] == headers_["X-Request-ID"]
        assert body_["error"] == "upstream.unavailable"
        text = json.dumps(body_)
        for leak in (sim.url, "127.0.0.1", "Traceback", "Upstream", "outage", "http"):
            assert leak not in text
    assert headers["Retry-After"] == "30"
    assert refused_in_s < 1.0


async def test_a_batch_answers_at_its_deadline_and_marks_the_unfinished_items(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """With the upstream hanging for 30 s and a 1 s batch deadline, the batch answers in about
    a second: the items that need no upstream judged, the one waiting on it marked
    batch.deadline_exceeded."""
    sim = await start_simulator(SimulatorSettings(timeout_rate=1.0, hang_s=30.0))
    corpus = build_corpus(80, seed=5)
    slow = next(r for r in corpus if r.label == "customer.v1.valid.structured")
    unknown = next(r for r in corpus if r.label == "type.unknown")
    try:
        settings = _outage_settings(tmp_path, kafka_bootstrap, sim.url, batch_deadline_s=1.0)
        async with (
            serving(settings) as (base, _runner),
            aiohttp.ClientSession(timeout=TIMEOUT) as http,
        ):
            body = json.dumps([batch_item(slow), batch_item(unknown), "not an event"]).encode()
            started = time.monotonic()
            status, result, _ = await post(http, f"{base}/v1/validate/batch", body, JSON)
            took_s = time.monotonic() - started
    finally:
        await sim.close()
    assert status == 200
    assert [(i["index"], i["status"]) for i in result["items"]] == [(0, 504), (1, 422), (2, 400)]
    assert [i["error"]["error"] for i in result["items"]] == [
        "batch.deadline_exceeded", "type.unknown", "decode.failed",
    ]  # fmt: skip
    assert (result["finished"], result["unfinished"]) == (2, 1)
    assert 1.0 <= took_s < 4.0


async def test_a_batch_body_that_is_not_an_array_of_allowed_size_is_refused(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """A batch that is not a JSON array, is empty or holds more than api.max_batch_items
    events is refused with 422 request.invalid (counted in /metrics of the operations
    endpoint `processor serve` runs beside), and the probes answer 200."""
    settings = _outage_settings(tmp_path, kafka_bootstrap, simulator_url, max_batch_items=2)
    event = structured_body(build_corpus(2, seed=1)[0])
    async with serving(settings) as (base, runner), aiohttp.ClientSession(timeout=TIMEOUT) as http:
        answers = [
            await post(http, f"{base}/v1/validate/batch", body, JSON)
            for body in (event, b"[]", b"[" + b",".join([event] * 3) + b"]", b"[1,")
        ]
        async with http.get(f"{base}/healthz") as live, http.get(f"{base}/readyz") as ready:
            probes = (live.status, await live.json(), ready.status, await ready.json())
        async with http.get(f"http://127.0.0.1:{runner.http_port}/metrics") as scraped:
            metrics = await scraped.text()
    details = [body["details"][0]["code"] for _, body, _ in answers]
    assert [status for status, _, _ in answers] == [422] * 4
    assert {body["error"] for _, body, _ in answers} == {"request.invalid"}
    assert details == ["body.not_an_array", "events.none", "events.too_many", "body.not_json"]
    assert probes == (200, {"live": True}, 200, {"ready": True, "accepting_records": True})
    assert 'processor_api_refusals_total{error="request.invalid"} 4.0' in metrics


async def test_the_api_and_the_stream_share_each_upstreams_rate_limit(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """In one process the stream and a concurrent batch call each upstream through one rate
    limiter: with the processor at 50 requests/s per upstream and the simulator allowing 75
    (slack for a loaded machine, not for a second limiter), the 200 customers of both front
    doors are judged without a single 429."""
    rate = {"rate_limit_rps": 50, "rate_limit_burst": 5}
    customers = bench_records(200, seed=31)  # valid, each with its own e-mail
    topics = unique_topics("api-budget")
    await create_topics(kafka_bootstrap, topics, partitions=2)
    coords = await publish_corpus(kafka_bootstrap, topics.input, customers[:100])
    collector = OutcomeCollector(kafka_bootstrap, topics)
    with simulator_process("--rate-limit-rps", "75", "--rate-limit-burst", "10") as url:
        upstreams = {name: rate for name in ("email", "vat", "sanctions")}
        settings = _with_api(settings_for(tmp_path, kafka_bootstrap, url, topics,
                                          upstreams=upstreams))  # fmt: skip
        async with running_app(settings) as app, aiohttp.ClientSession(timeout=TIMEOUT) as http:
            await wait_until(lambda: app.ready, 30, "the stream consumer in its group")
            assert app.api_port is not None
            body = json.dumps([batch_item(r) for r in customers[100:]]).encode()
            started = time.monotonic()
            status, result, _ = await post(
                http, f"http://127.0.0.1:{app.api_port}/v1/validate/batch", body, JSON
            )
            assert await collector.collect(set(coords), timeout_s=60)
            took_s = time.monotonic() - started
        stats = await SimControl(url).stats()
    assert status == 200
    assert [item_verdict(i) for i in result["items"]] == [("valid", "ok")] * 100
    assert {o[0].kind for o in collector.seen.values()} == {"valid"}
    print(f"\nsimulator: {stats['by_endpoint']}, {took_s:.1f}s")
    answered = {code for by in stats["by_endpoint"].values() for code in by}
    assert answered == {"200"}, stats["by_endpoint"]


async def test_records_takes_one_event_or_many_and_refuses_one_too_large_for_the_producer(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """A single event object is published (202, its partition and offset, keyed by its
    partitionkey); a request holding an event over the producer's request size is refused
    with 413 record.too_large and writes nothing."""
    settings = _outage_settings(tmp_path, kafka_bootstrap, simulator_url)
    topics = settings.kafka.topics
    await create_topics(kafka_bootstrap, topics, partitions=1)
    event = json.loads(structured_body(build_corpus(2, seed=1)[0]))
    huge = {**event, "data": {"blob": "x" * settings.kafka.producer_max_request_bytes}}
    async with serving(settings) as (base, _runner), aiohttp.ClientSession(timeout=TIMEOUT) as http:
        one = await post(http, f"{base}/v1/records", json.dumps({**event, "partitionkey": "k-1"})
                         .encode(), JSON)  # fmt: skip
        refused = await post(http, f"{base}/v1/records", json.dumps([event, huge]).encode(), JSON)
        after = await post(http, f"{base}/v1/records", json.dumps([event]).encode(), JSON)
    assert one[:2] == (202, {"topic": topics.input,
                             "records": [{"index": 0, "partition": 0, "offset": 0}]})  # fmt: skip
    assert refused[0] == 413
    assert refused[1]["error"] == "record.too_large"
    assert [d["field"] for d in refused[1]["details"]] == ["[1]"]
    assert after[1]["records"] == [{"index": 0, "partition": 0, "offset": 1}]  # nothing between


async def test_a_protected_api_asks_a_key_and_a_signature_and_replays_a_retried_publish(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """With API keys, request signing and idempotency on, the real API refuses a missing key
    and a bad signature (401, nothing written), judges a signed request, and a retried
    POST /v1/records with the same Idempotency-Key gets the first answer again without a
    second write; another body under that key is 422."""
    (tmp_path / "keys").write_text(f"team-a:{hash_key('k-team-a')}\n")
    (tmp_path / "secret").write_text("s3cret-signing\n")
    protection = {
        "auth": {"enabled": True, "key_hashes": {"file": str(tmp_path / "keys")}},
        "signing": {"enabled": True, "secret": {"file": str(tmp_path / "secret")}},
    }
    settings = _outage_settings(tmp_path, kafka_bootstrap, simulator_url,
                                protection=ApiProtection.model_validate(protection))  # fmt: skip
    topics = settings.kafka.topics
    await create_topics(kafka_bootstrap, topics, partitions=1)
    event = structured_body(build_corpus(2, seed=1)[0])

    def signed(body: bytes, key: str = "k-team-a", **extra: str) -> dict[str, str]:
        now = str(int(time.time()))
        return {**JSON, "X-API-Key": key, "X-Signature-Timestamp": now,
                "X-Signature": sign(b"s3cret-signing", now, body), **extra}  # fmt: skip

    async with serving(settings) as (base, _runner), aiohttp.ClientSession(timeout=TIMEOUT) as http:
        no_key = await post(http, f"{base}/v1/records", event, JSON)
        forged = await post(http, f"{base}/v1/records", event,
                            {**signed(event), "X-Signature": "0" * 64})  # fmt: skip
        judged = await post(http, f"{base}/v1/validate", event, signed(event))
        retry = {"Idempotency-Key": "publish-1"}
        first = await post(http, f"{base}/v1/records", event, signed(event, **retry))
        again = await post(http, f"{base}/v1/records", event, signed(event, **retry))
        other = json.dumps([json.loads(event)] * 2).encode()
        conflict = await post(http, f"{base}/v1/records", other, signed(other, **retry))
        next_one = await post(http, f"{base}/v1/records", event, signed(event))
    assert (no_key[0], no_key[1]["error"]) == (401, "auth.key_missing"), no_key
    assert (forged[0], forged[1]["error"]) == (401, "auth.signature_invalid"), forged
    assert judged[0] == 200, judged
    assert judged[1]["outcome"] == "valid"
    assert first[0] == 202, first
    assert again[:2] == first[:2]
    assert {k.lower(): v for k, v in again[2].items()}.get(REPLAY_HEADER.lower()) == "true"
    assert first[1]["records"] == [{"index": 0, "partition": 0, "offset": 0}]
    assert conflict[0] == 422, conflict
    # the next write lands right after the first: the others wrote nothing
    assert next_one[1]["records"] == [{"index": 0, "partition": 0, "offset": 1}], next_one
