"""Batched checks against the real simulator: the batcher over HTTP, and the whole processor."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from devtools.corpus import build_corpus
from devtools.reconcile import OutcomeCollector, publish_corpus, reconcile
from devtools.simulator.verdicts import EMAIL_PATH, email_verdict
from devtools.stack import config_data, save_config
from processor.batchplan import BatchConfig
from processor.config import BreakerConfig, RetryConfig, UpstreamConfig, load_settings
from processor.upstream import UpstreamClient, UpstreamRequest, UpstreamResponse, make_session
from processor.upstream.batcher import Batcher
from processor.upstream.breaker import CircuitBreaker
from processor.upstream.cache import ResponseCache
from processor.upstream.limiter import TokenBucket
from processor.upstream.resilient import ResilientCaller
from processor.waits import WaitBoard
from tests.support.setup import create_topics, running_app, unique_topics
from tests.support.sim import SimControl
from tests.unit.test_resilient_caller import RecordingObserver

BATCH_PATH = EMAIL_PATH + "/batch"
BATCH = {"path": BATCH_PATH, "match": "key", "item_key": "email", "status_field": "status",
         "max_items": 50, "max_wait_ms": 5}  # fmt: skip


async def test_the_batcher_over_http_answers_each_item_as_the_single_endpoint(
    simulator_url: str,
) -> None:
    """120 concurrent items go out as three batch requests (50, 50, 20) and each gets the
    verdict the single endpoint gives; a cached item is not asked again."""
    sim = SimControl(simulator_url)
    before = await sim.count(BATCH_PATH, "200")
    local = ["bounce" if i % 3 == 0 else "user" for i in range(120)]
    domain = ["example.invalid" if i % 5 == 0 else "example.com" for i in range(120)]
    emails = [f"{local[i]}.{i}@{domain[i]}" for i in range(120)]
    sizes: list[int] = []
    async with make_session() as session:
        config = UpstreamConfig(base_url=simulator_url)
        caller = ResilientCaller(
            UpstreamClient("email", config, session), retry=RetryConfig(), max_concurrency=8,
            breaker=CircuitBreaker("email", BreakerConfig(), WaitBoard()),
            limiter=TokenBucket(None), cache=ResponseCache(60.0, 1_000),
            observer=RecordingObserver(),
        )  # fmt: skip
        batcher = Batcher(caller, BatchConfig.model_validate(BATCH), sizes.append)
        requests = [UpstreamRequest("POST", EMAIL_PATH, {"email": e}, f"r{i}:email")
                    for i, e in enumerate(emails)]  # fmt: skip
        answers = await asyncio.wait_for(asyncio.gather(*map(batcher.call, requests)), 30)
        again = await batcher.call(requests[7])
    assert sorted(sizes) == [20, 50, 50]
    assert await sim.count(BATCH_PATH, "200") - before == 3
    assert all(isinstance(a, UpstreamResponse) for a in answers)
    got = [(a.body["deliverable"], a.body["reason"]) for a in answers]
    assert got == [email_verdict(e) for e in emails]
    assert again.attempts == 0
    assert again.body == answers[7].body


async def test_the_processor_with_the_batched_check_lands_records_where_unbatched_does(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """600 mixed records, the e-mail check batched, each get the outcome the unbatched check
    gives them (the corpus's expectation), with no single e-mail call made."""
    topics = unique_topics("batched")
    await create_topics(kafka_bootstrap, topics, partitions=2)
    corpus = build_corpus(600, keys=40, seed=17)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    data: dict[str, Any] = config_data(kafka_bootstrap, simulator_url, topics)
    for check in data["checks"]["customer.v1"]:
        if check["upstream"] == "email":
            check["batch"] = BATCH
    settings = load_settings(save_config(tmp_path / "processor.yaml", data))
    sim = SimControl(simulator_url)
    singles, batches = await sim.count(EMAIL_PATH), await sim.count(BATCH_PATH)

    async with running_app(settings) as app:
        collector = OutcomeCollector(kafka_bootstrap, topics)
        complete = await collector.collect(set(coords), timeout_s=120, settle_s=0.5)
        sent = app.metrics.registry.get_sample_value(
            "processor_upstream_batch_items_count", {"upstream": "email"}
        )

    result = reconcile(corpus, coords, collector.seen)
    assert complete, f"missing outcomes for {len(result.missing)} inputs"
    assert result.missing == []
    assert result.wrong == []
    assert await sim.count(EMAIL_PATH) == singles
    assert await sim.count(BATCH_PATH) - batches == sent
    assert sent is not None
    assert sent > 0
