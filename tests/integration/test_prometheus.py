"""The dashboard and the alert rules against a real Prometheus scraping a real processor run.

Prometheus runs as a subprocess with a copy of deploy/prometheus/prometheus.yml (1 s
intervals, the processor's /metrics as target, alerts.yml loaded); the processor runs in
this event loop against the real broker and the upstream simulator, on a corpus that gives
valid, invalid and dead-letter outcomes, with upstream errors (retries) and a rate limit
(limiter waits) so that every metric has series.

An alert expression compares against a threshold and so returns nothing while the alert
does not fire. Each is evaluated with every comparison turned into a ``bool`` one
(``A > 0.05`` becomes ``A > bool 0.05``, see ``non_filtering``): then it returns a 0 or 1
for each series it reads, and an empty answer means the expression reads nothing, which
is the mistake this test is for (a misspelt metric or label, a join that never matches).
When the alerts fire is proven by ``promtool test rules`` in the unit tests.
"""

from __future__ import annotations

from pathlib import Path

from devtools.corpus import build_corpus
from devtools.reconcile import OutcomeCollector, publish_corpus
from tests.support.observability import (
    JOB,
    alert_rules,
    dashboard_queries,
    exported_series_names,
    non_filtering,
    write_prometheus_config,
)
from tests.support.prometheus import PromQLError, running_prometheus
from tests.support.services import simulator_process
from tests.support.setup import create_topics, running_app, settings_for, unique_topics
from tests.support.waiting import wait_until

RECORDS = 600
UPSTREAMS = ("email", "vat", "sanctions")


async def test_every_dashboard_query_and_alert_expression_returns_data_from_a_real_run(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """With Prometheus scraping a processor that handled a mixed corpus, the rules evaluate
    cleanly, the processor exports exactly the listed metrics, and every dashboard query and
    alert expression (comparisons made non-filtering) answers success with data."""
    topics = unique_topics("prom")
    await create_topics(kafka_bootstrap, topics, partitions=3)
    corpus = build_corpus(RECORDS, keys=12, seed=71)
    # 10% upstream 5xx (retried), and a rate limit we keep to: retries and limiter waits.
    limited = {"rate_limit_rps": 400.0, "rate_limit_burst": 1}
    with simulator_process("--error-rate", "0.1", "--seed", "71") as url:
        settings = settings_for(
            tmp_path, kafka_bootstrap, url, topics, upstreams=dict.fromkeys(UPSTREAMS, limited)
        )
        async with running_app(settings) as app:
            await wait_until(lambda: app.http_port is not None, 30, "the HTTP endpoint")
            target = f"127.0.0.1:{app.http_port}"
            config = write_prometheus_config(tmp_path, target, interval="1s")
            async with running_prometheus(config, tmp_path) as prom:
                await prom.wait_for(f'up{{job="{JOB}"}}', lambda v: v == 1, 30)
                coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
                assert await OutcomeCollector(kafka_bootstrap, topics).collect(set(coords), 120)
                # Prometheus has scraped every outcome, and the lag once it was back to 0.
                outcomes = f'sum(processor_outcomes_total{{job="{JOB}"}})'
                await prom.wait_for(outcomes, lambda v: v == RECORDS, 30)
                lag = f'sum(processor_consumer_lag{{job="{JOB}"}})'
                await prom.wait_for(lag, lambda v: v == 0, 30)

                rules = await prom.rules()
                scraped = await prom.metric_names()
                queries = {f"panel {q.panel!r} {q.ref_id}": q.expr for q in dashboard_queries()}
                for rule in alert_rules():
                    queries[f"alert {rule['alert']}"] = non_filtering(rule["expr"])
                failed: dict[str, str] = {}
                for name, expr in queries.items():
                    try:
                        if not await prom.query(expr):
                            failed[name] = f"no data: {expr}"
                    except PromQLError as exc:
                        failed[name] = str(exc)
                topics_seen = await prom.query(
                    f'sum by (topic) (processor_outcomes_total{{job="{JOB}"}})'
                )

    health = {r["name"]: (r["health"], r.get("lastError", "")) for r in rules}
    assert health == {r["alert"]: ("ok", "") for r in alert_rules()}
    ours = {n for n in scraped if n.startswith("processor_") and not n.endswith("_created")}
    assert ours == exported_series_names()  # _created: prometheus_client's start timestamps
    assert failed == {}
    assert {s["metric"]["topic"] for s in topics_seen} == {"valid", "invalid", "dead-letter"}
