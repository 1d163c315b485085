"""Upstream resilience against the real simulator and a real broker: rate limits, retries,
outages, Retry-After, and duplicate records answered from the cache."""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from devtools.corpus import CorpusRecord, build_corpus
from devtools.reconcile import OutcomeCollector, publish_corpus, reconcile
from devtools.simulator.verdicts import EMAIL_PATH
from processor.app import App
from tests.support.services import simulator_process
from tests.support.setup import create_topics, running_app, settings_for, unique_topics
from tests.support.sim import SimControl
from tests.support.waiting import wait_until


@contextlib.contextmanager
def simulator(*args: str) -> Iterator[SimControl]:
    """A simulator of this test's own, with the given fault flags."""
    with simulator_process(*args) as url:
        yield SimControl(url)


def without_dead_letters(corpus: Sequence[CorpusRecord]) -> list[CorpusRecord]:
    """The records that must end valid or invalid (every one of them calls upstreams)."""
    return [r for r in corpus if r.expected_topic != "dead-letter"]


def metric(app: App, name: str, **labels: str) -> float:
    return app.metrics.registry.get_sample_value(name, labels) or 0.0


async def run_to_completion(
    app_settings: Any,
    bootstrap: str,
    corpus: Sequence[CorpusRecord],
    *,
    timeout_s: float = 240,
    during: Callable[[App], Any] | None = None,
) -> tuple[App, Any, Any]:
    """Publish ``corpus``, run the processor until every input has an outcome, reconcile."""
    topics = app_settings.kafka.topics
    coords = await publish_corpus(bootstrap, topics.input, corpus)
    collector = OutcomeCollector(bootstrap, topics)
    async with running_app(app_settings) as app:
        side = asyncio.create_task(during(app)) if during is not None else None
        complete = await collector.collect(set(coords), timeout_s=timeout_s, settle_s=0.5)
        if side is not None:
            await asyncio.wait_for(side, 60)
    result = reconcile(corpus, coords, collector.seen)
    assert complete, f"{len(result.missing)} inputs without outcome"
    return app, result, side.result() if side is not None else None


RATE = 100
#: Long enough for the breakers to open, half-open and open again (open_s is 2 s).
OUTAGE_S = 10


async def test_rate_limit_is_used_to_within_five_percent_without_a_single_429(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """With the e-mail API limited to 100 requests/s and the processor set to 100/s, a
    3,000-record run never gets a 429 and calls it at 100/s within 5%. (At 200/s this
    2-core machine ran out of CPU before the limit: 119-156 requests/s on some days.)"""
    topics = unique_topics("rate")
    await create_topics(kafka_bootstrap, topics, partitions=4)
    corpus = build_corpus(3_000, keys=40, seed=21)
    # burst 10 = 100 ms of slack: the simulator stamps arrivals when its loop gets to them
    with simulator("--rate-limit-rps", str(RATE), "--rate-limit-burst", "10") as limited:
        settings = settings_for(
            tmp_path, kafka_bootstrap, simulator_url, topics,
            upstreams={"email": {"base_url": limited.url, "rate_limit_rps": RATE,
                                 "rate_limit_burst": 5}},
        )  # fmt: skip
        app, result, _ = await run_to_completion(settings, kafka_bootstrap, corpus)
        arrivals = await limited.requests(EMAIL_PATH)
    assert result.missing == []
    assert result.wrong == []
    statuses = {status for _, status in arrivals}
    assert statuses == {200}, f"the limited upstream answered {statuses}"
    times = [t for t, _ in arrivals]
    steady = [t for t in times if times[0] + 1.0 <= t <= times[-1] - 1.0]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    print(f"\nmeasured e-mail API rate: {rate:.1f} requests/s over {len(arrivals)} calls")
    assert 0.95 * RATE <= rate <= 1.05 * RATE
    assert metric(app, "processor_rate_limiter_wait_seconds_count", upstream="email") > 0


async def test_flaky_upstream_with_errors_and_timeouts_dead_letters_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """With 30% of answers 5xx and some requests hanging, every record still ends valid or
    invalid with its true verdict; the retries show in metrics and logs."""
    topics = unique_topics("flaky")
    await create_topics(kafka_bootstrap, topics, partitions=4)
    corpus = without_dead_letters(build_corpus(2_500, keys=40, seed=22))
    flaky_args = ("--error-rate", "0.3", "--timeout-rate", "0.03", "--hang-s", "3", "--seed", "3")
    upstream = {"total_timeout_s": 0.5, "read_timeout_s": 0.5, "retry": {"max_attempts": 12}}
    with simulator(*flaky_args) as flaky:
        settings = settings_for(
            tmp_path, kafka_bootstrap, flaky.url, topics,
            upstreams={name: upstream for name in ("email", "vat", "sanctions")},
        )  # fmt: skip
        with capture_logs() as logs:
            app, result, _ = await run_to_completion(settings, kafka_bootstrap, corpus)
        stats = await flaky.stats()
    assert result.missing == []
    assert result.wrong == []
    assert "dead-letter" not in result.by_topic
    served = {s for by in stats["by_endpoint"].values() for s in by}
    assert {"503", "504"} <= served, "the simulator did not inject both faults"
    retries = sum(
        metric(app, "processor_upstream_retries_total", upstream=u, reason=r)
        for u in ("email", "vat", "sanctions") for r in ("5xx", "timeout")
    )  # fmt: skip
    print(f"\nflaky run: {retries:.0f} retries, outcomes {dict(result.by_reason)}")
    assert retries > 0
    retry_logs = [e for e in logs if e["event"] == "upstream.retry_scheduled"]
    assert len(retry_logs) == retries
    assert {e["error"] for e in retry_logs} == {"upstream.unavailable", "upstream.timeout"}


async def test_outage_pauses_intake_and_dead_letters_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """An upstream fully down for 10 s mid-run dead-letters nothing: its records wait with
    their partitions paused and in-flight bounded, and all end with their true outcome."""
    topics = unique_topics("outage")
    await create_topics(kafka_bootstrap, topics, partitions=4)
    corpus = without_dead_letters(build_corpus(4_000, keys=40, seed=23))
    max_in_flight = 400
    with simulator("--latency-ms", "2") as sim:
        settings = settings_for(
            tmp_path, kafka_bootstrap, sim.url, topics,
            max_in_flight=max_in_flight, max_in_flight_per_partition=200,
        )  # fmt: skip

        async def outage_mid_run(app: App) -> dict[str, float]:
            seen = {"blocked": 0.0, "paused": 0.0, "in_flight": 0.0, "breaker": 0.0}
            await wait_until(
                lambda: metric(app, "processor_outcomes_total", topic="valid", reason="ok") >= 500,
                timeout_s=120, what="500 valid outcomes",
            )  # fmt: skip
            await sim.control(outage_for_s=OUTAGE_S)
            loop = asyncio.get_running_loop()
            end = loop.time() + OUTAGE_S
            while loop.time() < end:
                seen["blocked"] = max(seen["blocked"], metric(app, "processor_blocked_partitions"))
                seen["paused"] = max(seen["paused"], metric(app, "processor_paused_partitions"))
                seen["in_flight"] = max(
                    seen["in_flight"], metric(app, "processor_in_flight_records")
                )
                seen["breaker"] = max(
                    seen["breaker"], *(metric(app, "processor_breaker_state", upstream=u)
                                       for u in ("email", "vat", "sanctions"))
                )  # fmt: skip
                await asyncio.sleep(0.1)
            return seen

        _app, result, seen = await run_to_completion(
            settings, kafka_bootstrap, corpus, during=outage_mid_run
        )
        stats = await sim.stats()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\noutage run: {seen}, peak RSS of the test process {rss_mib:.0f} MiB")
    assert sum(by.get("503", 0) for by in stats["by_endpoint"].values()) > 0
    assert result.missing == []
    assert result.wrong == []
    assert "dead-letter" not in result.by_topic
    assert seen["breaker"] == 2, "no breaker opened during the outage"
    assert seen["blocked"] >= 1
    assert seen["paused"] >= 1
    assert seen["in_flight"] <= max_in_flight


async def test_retry_after_holds_every_call_to_that_upstream(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """After a 429 with Retry-After: 2, no further call reaches that upstream for 2 s."""
    topics = unique_topics("retry-after")
    await create_topics(kafka_bootstrap, topics, partitions=2)
    customers = [r for r in without_dead_letters(build_corpus(400, seed=24))
                 if r.label.startswith("customer.v1") and "schema" not in r.label][:30]  # fmt: skip
    args = ("--rate-limit-rps", "5", "--rate-limit-burst", "8", "--retry-after-s", "2")
    with simulator(*args) as limited:
        settings = settings_for(
            tmp_path, kafka_bootstrap, simulator_url, topics,
            upstreams={"email": {"base_url": limited.url, "max_concurrency": 1,
                                 "retry": {"max_attempts": 20, "budget_s": 120}}},
        )  # fmt: skip
        _, result, _ = await run_to_completion(settings, kafka_bootstrap, customers)
        arrivals = await limited.requests(EMAIL_PATH)
    assert result.missing == []
    assert result.wrong == []
    limited_at = [i for i, (_, status) in enumerate(arrivals) if status == 429]
    assert limited_at, "the test never provoked a 429"
    for i in limited_at:
        if i + 1 < len(arrivals):
            gap = arrivals[i + 1][0] - arrivals[i][0]
            assert gap >= 2.0, f"a call came {gap:.3f}s after a 429 with Retry-After: 2"


async def test_duplicate_records_are_answered_from_the_cache(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A run where 30% of records repeat an earlier record id makes correspondingly fewer
    upstream calls, each carrying an Idempotency-Key and the configured credentials."""
    topics = unique_topics("dupes")
    await create_topics(kafka_bootstrap, topics, partitions=3)
    unique = without_dead_letters(build_corpus(1_600, keys=30, seed=25))[:1_400]
    corpus = unique + random.Random(25).sample(unique, 600)  # 600 repeats: 30% of 2,000
    needed = sum(2 + ('"vat_id"' in (r.value or b"").decode()) if r.label.startswith("customer")
                 else 2 for r in corpus if "schema" not in r.label)  # fmt: skip
    token_file = tmp_path / "token"
    token_file.write_text("t0p-secret-value\n")
    auth = {"auth": {"kind": "bearer", "token_file": str(token_file)}}
    with simulator() as sim:
        settings = settings_for(
            tmp_path, kafka_bootstrap, sim.url, topics,
            upstreams={name: auth for name in ("email", "vat", "sanctions")},
        )  # fmt: skip
        with capture_logs() as logs:
            _, result, _ = await run_to_completion(settings, kafka_bootstrap, corpus)
        stats = await sim.stats()
    assert result.missing == []
    assert result.wrong == []
    calls = stats["requests_total"]
    ratio = calls / needed
    print(f"\nupstream calls {calls} for {needed} check runs: ratio {ratio:.3f}")
    assert ratio <= 0.75
    assert stats["requests_without_idempotency_key"] == 0
    assert stats["authorized_requests"] == calls
    assert "t0p-secret-value" not in repr(logs)
