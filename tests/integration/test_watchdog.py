"""The stall watchdog against a real hanging upstream: reported stalled (readiness kept),
then recovered."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from devtools.corpus import build_corpus
from devtools.reconcile import OutcomeCollector, publish_corpus, reconcile
from tests.support.services import simulator_process
from tests.support.setup import create_topics, running_app, settings_for, unique_topics
from tests.support.sim import SimControl
from tests.support.waiting import wait_until


async def test_a_hanging_upstream_is_reported_stalled_naming_the_stuck_check(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """When every upstream call hangs, /status says stalled within the stall timeout with a
    log line naming the partition and the check while readiness stays true (an upstream
    outage is not the pod's fault), and the stall clears once calls return."""
    topics = unique_topics("stall")
    await create_topics(kafka_bootstrap, topics, partitions=2)
    corpus = [r for r in build_corpus(300, keys=10, seed=31) if r.label.startswith("customer")]
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    with simulator_process("--timeout-rate", "1.0", "--hang-s", "4") as url:
        sim = SimControl(url)
        hanging = {"total_timeout_s": 30, "read_timeout_s": 30}
        settings = settings_for(
            tmp_path, kafka_bootstrap, url, topics,
            upstreams={n: hanging for n in ("email", "vat", "sanctions")},
            stall_timeout_s=1.5,
        )  # fmt: skip
        with capture_logs() as logs:
            async with running_app(settings) as app:
                await wait_until(lambda: app.watchdog is not None and app.watchdog.stalled,
                                 timeout_s=30, what="the stall")  # fmt: skip
                assert app.http_port is not None
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                    base = f"http://127.0.0.1:{app.http_port}"
                    async with http.get(f"{base}/readyz") as ready:
                        assert ready.status == 200  # a stall is reported, not a probe failure
                    async with http.get(f"{base}/livez") as live:
                        assert live.status == 200
                    async with http.get(f"{base}/status") as status:
                        assert (await status.json())["stalled"] is True
                await sim.control(timeout_rate=0.0)
                collector = OutcomeCollector(kafka_bootstrap, topics)
                assert await collector.collect(set(coords), timeout_s=60)
                await wait_until(lambda: app.watchdog is not None and not app.watchdog.stalled,
                                 timeout_s=10, what="the stall to clear")  # fmt: skip
    stalled = [e for e in logs if e["event"] == "engine.stalled"]
    assert len(stalled) >= 1
    first = stalled[0]
    assert first["topic"] == topics.input
    assert first["partition"] in (0, 1)
    assert first["stuck_on"].startswith("check ")
    assert first["log_level"] == "error"
    assert any(e["event"] == "engine.unstalled" for e in logs)
    result = reconcile(corpus, coords, collector.seen)
    assert result.missing == []
    assert result.wrong == []
