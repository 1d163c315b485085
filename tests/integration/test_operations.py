"""The operations endpoint and logs of a real run: health, readiness, metrics, status."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from devtools.corpus import build_corpus
from devtools.local_kafka import LocalKafka
from devtools.reconcile import OutcomeCollector, publish_corpus
from processor.app import App
from processor.errors import EndpointError
from tests.support.services import simulator_process
from tests.support.setup import (
    create_topics,
    running_app,
    settings_for,
    unique_topics,
    write_config,
)
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Answer:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


async def _get(port: int, path: str) -> Answer:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        return Answer(resp.status, await resp.text())


async def test_endpoints_answer_from_a_live_run(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """During a run /healthz, /readyz, /metrics, /status and the OpenAPI document answer,
    and the metrics and status agree with what the run did."""
    topics = unique_topics("ops")
    await create_topics(kafka_bootstrap, topics, partitions=3)
    corpus = build_corpus(600, keys=12, seed=51)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    settings = settings_for(tmp_path, kafka_bootstrap, simulator_url, topics)
    with capture_logs() as logs:
        async with running_app(settings) as app:
            assert await OutcomeCollector(kafka_bootstrap, topics).collect(set(coords), 120)
            port = app.http_port
            assert port is not None
            await wait_until(lambda: app.ready, timeout_s=15, what="readiness")
            health, ready, metrics, status, openapi = await asyncio.gather(
                *(_get(port, p) for p in
                  ("/healthz", "/readyz", "/metrics", "/status", "/openapi.json"))
            )  # fmt: skip
    assert health.json() == {"live": True, "intake_running": True, "intake_not_stuck": True}
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "started": True, "in_group": True,
                            "broker_reachable": True}  # fmt: skip
    text = metrics.text
    assert 'processor_outcomes_total{reason="ok",topic="valid"}' in text
    assert "processor_records_consumed_total 600.0" in text
    assert 'processor_check_seconds_count{check="email_deliverable"}' in text
    assert "processor_build_info{" in text
    body = status.json()
    assert body["ready"] is True
    assert sorted(body["assigned"]) == [f"{topics.input}-{p}" for p in range(3)]
    assert sum(body["outcomes_total"].values()) == 600
    paths = {"/livez", "/healthz", "/readyz", "/metrics", "/status", "/guard/resume"}
    assert set(openapi.json()["paths"]) == paths
    assigned = [e for e in logs if e["event"] == "intake.assigned"]
    assert assigned == [{"event": "intake.assigned", "log_level": "info",
                         "partitions": [(topics.input, p) for p in range(3)]}]  # fmt: skip


async def test_readyz_follows_the_broker_going_away_and_coming_back(
    stoppable_broker: LocalKafka, tmp_path: Path
) -> None:
    """With its broker stopped, /readyz turns 503 within the configured check time while
    /livez stays 200 (no restart for a broker outage), and 200 again once it is back."""
    broker = stoppable_broker
    topics = unique_topics("readyz")
    await create_topics(broker.bootstrap_servers, topics, partitions=1)
    with simulator_process() as url:
        settings = settings_for(tmp_path, broker.bootstrap_servers, url, topics)
        probe = settings.endpoint
        interval = probe.broker_check_interval_s + probe.broker_check_timeout_s
        async with running_app(settings) as app:
            await wait_until(lambda: app.ready, timeout_s=30, what="ready at first")
            port = app.http_port
            assert port is not None
            await asyncio.to_thread(broker.stop)
            loop = asyncio.get_running_loop()
            stopped_at = loop.time()
            await wait_until(lambda: not app.ready, timeout_s=interval + 5, what="unready")
            unready_after = loop.time() - stopped_at
            assert (await _get(port, "/readyz")).status_code == 503
            body = (await _get(port, "/readyz")).json()
            assert body["broker_reachable"] is False
            assert (await _get(port, "/livez")).status_code == 200
            await asyncio.to_thread(broker.start)
            await wait_until(lambda: app.ready, timeout_s=60, what="ready again")
            assert (await _get(port, "/readyz")).status_code == 200
    print(f"\n/readyz unready {unready_after:.1f}s after the broker stopped")


async def test_a_standby_member_without_partitions_is_ready(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """A second member of a one-partition group holds nothing and still answers /readyz
    200 (in the group, broker reachable), so a replica beyond the partition count is a
    Ready standby pod, not a never-ready one."""
    topics = unique_topics("standby")
    await create_topics(kafka_bootstrap, topics, partitions=1)
    settings = settings_for(tmp_path, kafka_bootstrap, simulator_url, topics)
    async with running_app(settings) as one, running_app(settings) as two:
        await wait_until(lambda: one.ready and two.ready, timeout_s=60, what="both ready")
        ports = [app.http_port for app in (one, two)]
        assert None not in ports
        bodies = [(await _get(p, "/status")).json() for p in ports if p is not None]
        assert sorted(len(b["assigned"]) for b in bodies) == [0, 1]
        for port in ports:
            assert port is not None
            ready = await _get(port, "/readyz")
            assert ready.status_code == 200
            assert ready.json()["in_group"] is True


async def test_no_secret_from_the_config_appears_in_a_full_runs_logs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A CLI run whose upstreams use a bearer token and an API-key file logs neither secret,
    while the upstream does receive them."""
    topics = unique_topics("secrets")
    await create_topics(kafka_bootstrap, topics, partitions=2)
    corpus = build_corpus(400, keys=8, seed=52)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    key_file = tmp_path / "api-key"
    key_file.write_text("k3y-from-a-file-0042\n")
    auth = {
        "email": {"auth": {"kind": "bearer", "token": "b3arer-in-the-yaml-0042"}},
        "vat": {"auth": {"kind": "api_key", "token_file": str(key_file)}},
    }
    log = tmp_path / "processor.log"
    with simulator_process() as url:
        config = write_config(tmp_path / "p.yaml", kafka_bootstrap, url, topics, upstreams=auth)
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "processor.cli", "run", "--config", str(config),
                stdout=out, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        try:
            assert await OutcomeCollector(kafka_bootstrap, topics).collect(set(coords), 120)
        finally:
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        check = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "processor.cli", "check-config", "--config", str(config),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        printed, _ = await check.communicate()
    logged = log.read_text() + printed.decode()
    assert '"event": "processor.stopped"' in logged
    for secret in ("b3arer-in-the-yaml-0042", "k3y-from-a-file-0042"):
        assert secret not in logged


async def test_a_taken_endpoint_port_stops_the_started_kafka_clients(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """When the endpoint cannot listen after the Kafka clients started, run() raises
    EndpointError and leaves no client task behind (the exit stack stopped them)."""
    topics = unique_topics("taken")
    await create_topics(kafka_bootstrap, topics, partitions=1)
    settings = settings_for(tmp_path, kafka_bootstrap, "http://127.0.0.1:9", topics)
    before = asyncio.all_tasks()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        endpoint = settings.endpoint.model_copy(update={"port": port})
        app = App(settings.model_copy(update={"endpoint": endpoint}))
        with pytest.raises(EndpointError, match=f"127.0.0.1:{port}"):
            await app.run()
    left = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert left == set(), [t.get_coro() for t in left]


async def test_processor_run_on_a_taken_port_exits_1_with_one_message_line(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """`processor run` whose endpoint port is taken exits 1 and says why on one stderr line."""
    topics = unique_topics("taken-cli")
    await create_topics(kafka_bootstrap, topics, partitions=1)
    config = write_config(tmp_path / "p.yaml", kafka_bootstrap, "http://127.0.0.1:9", topics)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "processor.cli", "run", "--config", str(config),
            env={**os.environ, "PROCESSOR_ENDPOINT__PORT": str(port)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("processor: the operations endpoint cannot listen on 127.0.0.1:")
