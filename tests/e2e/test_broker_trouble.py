"""Broker trouble, against the broker tests may stop (stopped and started by the tests):
an outage told in two events, SIGTERM while the broker is down, a bootstrap address that
never answers, an input topic created after start-up, and lag while partitions are paused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from devtools.corpus import build_corpus
from devtools.local_kafka import LocalKafka
from devtools.reconcile import OutcomeCollector, publish_corpus
from processor.kafka import ensure_topics
from tests.support.cli_process import CliProcesses
from tests.support.setup import (
    create_topics,
    running_app,
    settings_for,
    unique_topics,
    write_config,
)
from tests.support.waiting import wait_until

DRAIN_TIMEOUT_S = 4.0
#: aiokafka's lines during the outage: thousands a minute without the rate limit.
AIOKAFKA_LINES_BOUND = 60


@pytest.fixture
def broker(stoppable_broker: LocalKafka) -> LocalKafka:
    """The broker these tests stop and start (not the session's)."""
    return stoppable_broker


@contextlib.asynccontextmanager
async def silent_listener() -> AsyncIterator[str]:
    """A TCP listener on 127.0.0.1 that accepts connections and never says a word; yields
    its ``host:port`` and closes every connection it accepted when the block ends."""
    accepted: list[asyncio.StreamWriter] = []
    hold = asyncio.Event()

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await hold.wait()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        hold.set()
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()


async def test_an_outage_is_two_events_and_a_bounded_number_of_aiokafka_lines(
    broker: LocalKafka, simulator_url: str, tmp_path: Path, cli: CliProcesses
) -> None:
    """A broker stopped mid-run and started again gives exactly one kafka.unreachable and
    one kafka.reachable event (with how long it was down), and aiokafka's lines stay few."""
    bootstrap = broker.bootstrap_servers
    topics = unique_topics("outage")
    await create_topics(bootstrap, topics, partitions=2)
    await publish_corpus(bootstrap, topics.input, build_corpus(100, keys=10, seed=61))
    config = write_config(tmp_path / "p.yaml", bootstrap, simulator_url, topics)
    proc = await cli.start(config, tmp_path / "p.log")
    await wait_until(lambda: bool(proc.events("intake.assigned")), 60, "assignment")
    stopping_at = time.monotonic()  # the broker stops answering during its shutdown
    await asyncio.to_thread(broker.stop)
    await wait_until(lambda: bool(proc.events("kafka.unreachable")), 20, "unreachable event")
    await asyncio.to_thread(broker.start)
    await wait_until(lambda: bool(proc.events("kafka.reachable")), 30, "reachable event")
    outage_s = time.monotonic() - stopping_at
    assert await proc.stop(DRAIN_TIMEOUT_S + 30) == 0, proc.tail()
    (down,) = proc.events("kafka.unreachable")
    (back,) = proc.events("kafka.reachable")
    assert down["address"] == back["address"] == bootstrap
    assert back["since"] == down["since"]
    assert 0 < back["down_s"] <= outage_s + 0.1  # down_s is rounded to 0.1 s
    lines = proc.log.read_text().splitlines()
    aiokafka = [line for line in lines if '"logger": "aiokafka' in line]
    assert len(aiokafka) <= AIOKAFKA_LINES_BOUND, len(aiokafka)
    print(f"\noutage of {outage_s:.1f}s: {len(aiokafka)} aiokafka lines")


async def test_sigterm_while_the_broker_is_down_exits_0_within_the_drain_deadline(
    broker: LocalKafka, simulator_url: str, tmp_path: Path, cli: CliProcesses
) -> None:
    """SIGTERM with the broker down: exit 0 within the drain deadline (and a floor for the
    commit and the clients), no traceback, and a line naming the offsets not committed."""
    bootstrap = broker.bootstrap_servers
    topics = unique_topics("sigdown")
    await create_topics(bootstrap, topics, partitions=2)
    coords = await publish_corpus(bootstrap, topics.input, build_corpus(100, keys=10, seed=62))
    config = write_config(
        tmp_path / "p.yaml", bootstrap, simulator_url, topics,
        drain_timeout_s=DRAIN_TIMEOUT_S, commit_interval_s=3600.0,  # nothing committed yet
    )  # fmt: skip
    proc = await cli.start(config, tmp_path / "p.log")
    assert await OutcomeCollector(bootstrap, topics).collect(set(coords), 60), proc.tail()
    await asyncio.to_thread(broker.stop)
    await wait_until(lambda: bool(proc.events("kafka.unreachable")), 20, "unreachable event")
    asked = time.monotonic()
    assert await proc.stop(DRAIN_TIMEOUT_S + 30) == 0, proc.tail()
    took_s = time.monotonic() - asked
    assert took_s < DRAIN_TIMEOUT_S + 5, took_s  # + the floors: commit 1 s, clients 2 s
    assert "Traceback" not in proc.log.read_text(), proc.tail()
    (incomplete,) = proc.events("processor.commit_incomplete")
    # every record finished: each partition's watermark is one past its last offset
    expected = {f"{topics.input}-{p}": max(o for q, o in coords if q == p) + 1 for p in (0, 1)}
    assert incomplete["uncommitted"] == expected


async def test_a_bootstrap_address_that_never_answers_fails_within_the_connect_timeout(
    tmp_path: Path,
) -> None:
    """`processor run` against a listener that accepts and says nothing exits 1 within
    kafka.connect_timeout_s, with a message naming the address."""
    async with silent_listener() as address:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": address,
               "PROCESSOR_KAFKA__CONNECT_TIMEOUT_S": "2"}  # fmt: skip
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "processor.cli", "run", "--no-config",
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
        took_s = time.monotonic() - started
    assert proc.returncode == 1
    assert took_s < 15, took_s  # aiokafka's own request timeout is 30 s
    message = stderr.decode().strip().splitlines()[-1]
    assert message == (
        f"processor: Kafka at {address} did not answer within 2s (kafka.connect_timeout_s): "
        "is it a Kafka listener?"
    )


async def test_an_input_topic_created_after_start_up_is_picked_up_within_seconds(
    broker: LocalKafka, simulator_url: str, tmp_path: Path
) -> None:
    """A processor started before its input topic exists warns once at start-up, and
    records published to the topic once created get their outcomes within seconds."""
    bootstrap = broker.bootstrap_servers
    topics = unique_topics("late")
    await ensure_topics(bootstrap, [topics.valid, topics.invalid, topics.dead_letter], 1)
    settings = settings_for(tmp_path, bootstrap, simulator_url, topics)
    with capture_logs() as logs:
        async with running_app(settings) as app:
            await wait_until(lambda: app.status is not None, 30, "the app built")
            await wait_until(
                lambda: any(e["event"] == "kafka.input_topic_missing" for e in logs),
                30, "the missing-topic warning",
            )  # fmt: skip
            await ensure_topics(bootstrap, [topics.input], 2)
            created = time.monotonic()
            coords = await publish_corpus(bootstrap, topics.input, build_corpus(50, seed=63))
            assert await OutcomeCollector(bootstrap, topics).collect(set(coords), 30)
            picked_up_s = time.monotonic() - created
    (missing,) = [e for e in logs if e["event"] == "kafka.input_topic_missing"]
    assert (missing["topic"], missing["log_level"]) == (topics.input, "warning")
    assert any(e["event"] == "kafka.input_topic_found" for e in logs)
    print(f"\ninput topic picked up, all outcomes read {picked_up_s:.1f}s after its creation")


async def test_lag_grows_with_the_backlog_while_every_partition_is_paused(
    broker: LocalKafka, tmp_path: Path
) -> None:
    """With records stuck on an upstream that never answers (caps reached, partitions
    paused), the lag in /status and the gauge grows by the records published meanwhile."""
    bootstrap = broker.bootstrap_servers
    topics = unique_topics("paused-lag")
    await create_topics(bootstrap, topics, partitions=1)
    lag_key, backlog = f"{topics.input}-0", 140
    slow = {"read_timeout_s": 60.0, "total_timeout_s": 60.0}
    async with silent_listener() as upstream:
        settings = settings_for(
            tmp_path, bootstrap, f"http://{upstream}", topics,
            upstreams=dict.fromkeys(("email", "vat", "sanctions"), slow),
            max_in_flight=4, max_in_flight_per_partition=4, drain_timeout_s=1.0,
        )  # fmt: skip
        async with running_app(settings) as app:
            await wait_until(lambda: app.status is not None, 30, "the app built")
            status, registry = app.status, app.metrics.registry
            assert status is not None
            await publish_corpus(bootstrap, topics.input, build_corpus(40, seed=64)[:-1])
            await wait_until(
                lambda: registry.get_sample_value("processor_paused_partitions") == 1,
                30, "the partition paused",
            )  # fmt: skip
            await wait_until(lambda: lag_key in status.status()["lag"], 30, "a first lag")
            before = status.status()["lag"][lag_key]
            await publish_corpus(bootstrap, topics.input, build_corpus(backlog + 1, seed=65)[:-1])
            await wait_until(
                lambda: status.status()["lag"][lag_key] >= before + backlog, 15, "lag growth"
            )
            gauge = registry.get_sample_value(
                "processor_consumer_lag", {"topic": topics.input, "partition": "0"}
            )
    assert gauge is not None
    assert gauge >= before + backlog
