"""Tracing on the real broker and simulator: a span per record linked to its producer, child
spans per check and for the publish, traceparent on upstream calls and on outcome records,
dead letters untouched; and once over the wire to an OTLP/HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from devtools.corpus import CorpusRecord, build_corpus
from devtools.reconcile import OutcomeCollector, publish_corpus
from processor import tracing
from processor.app import App
from processor.config import Settings, TopicsConfig, load_settings
from tests.support.cli_process import cli_processes, exited
from tests.support.setup import create_topics, unique_topics, write_config
from tests.support.sim import SimControl
from tests.support.waiting import wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _traceparent(i: int) -> bytes:
    return f"00-{TRACE_ID}-{i + 1:016x}-01".encode()


def _with_producer_context(corpus: list[CorpusRecord]) -> list[CorpusRecord]:
    """Every record gets its producer's traceparent (span id i + 1)."""
    out = []
    for i, record in enumerate(corpus):
        headers = tuple(h for h in record.headers if h[0] != "traceparent")
        traced = (*headers, ("traceparent", _traceparent(i)))
        out.append(dataclasses.replace(record, headers=traced))
    return out


def _traced_config(path: Path, bootstrap: str, simulator_url: str, topics: TopicsConfig) -> Path:
    config = write_config(path, bootstrap, simulator_url, topics)
    data = yaml.safe_load(config.read_text())
    data["tracing"] = {"enabled": True}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """An in-memory span exporter; tracing is off again after the test."""
    exported = InMemorySpanExporter()
    yield exported
    tracing.uninstall()


@contextlib.asynccontextmanager
async def running_app_with(
    settings: Settings, exporter: InMemorySpanExporter
) -> AsyncIterator[App]:
    """The processor in this event loop, its spans going to ``exporter``."""
    app = App(settings, span_exporter=exporter)
    task = asyncio.create_task(app.run())
    try:
        yield app
    finally:
        app.request_stop()
        assert await asyncio.wait_for(task, 90) == 0


async def test_each_record_is_a_span_linked_to_its_producer_with_checks_and_publish(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    """One CONSUMER span per record linking to the input's traceparent, with the verdict;
    check and publish spans are its children; upstream calls carry a traceparent; valid
    and invalid outcomes get a fresh traceparent, dead letters keep the input's."""
    topics = unique_topics("trace")
    await create_topics(kafka_bootstrap, topics, partitions=2)
    corpus = _with_producer_context(build_corpus(120, keys=10, seed=13))
    config = _traced_config(tmp_path / "processor.yaml", kafka_bootstrap, simulator_url, topics)
    sim = SimControl(simulator_url)
    before = await sim.stats()
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    collector = OutcomeCollector(kafka_bootstrap, topics)
    async with running_app_with(load_settings(config), exporter):
        assert await collector.collect(set(coords), 60)
    spans = exporter.get_finished_spans()
    records = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert len(records) == len(corpus)
    for i, (partition, offset) in enumerate(coords):
        span = next(s for s in records
                    if (s.attributes or {})["messaging.destination.partition.id"] == str(partition)
                    and (s.attributes or {})["messaging.kafka.offset"] == offset)  # fmt: skip
        assert [f"{link.context.span_id:016x}" for link in span.links] == [f"{i + 1:016x}"]
        assert span.parent is None
        assert span.context.trace_id != int(TRACE_ID, 16)  # a new trace, linked
        kind = corpus[i].expected_topic
        assert (span.attributes or {})["record.verdict"] == kind
    record_ids = {s.context.span_id for s in records}
    children = Counter(
        s.name.split(" ")[0] if s.name.startswith("check ") else s.name.rsplit(" ", 1)[1]
        for s in spans
        if s.parent is not None and s.parent.span_id in record_ids
    )
    assert children["publish"] == len(corpus)
    assert children["check"] > 0
    after = await sim.stats()  # every upstream request carried a traceparent
    calls = after["requests_total"] - before["requests_total"]
    assert after["traced_requests"] - before["traced_requests"] == calls > 0
    inputs = {(p, o): corpus[i] for i, (p, o) in enumerate(coords)}
    for where, outcomes in collector.seen.items():
        (outcome,) = outcomes
        parents = [v for k, v in outcome.headers if k == "traceparent"]
        original = dict(inputs[where].headers)["traceparent"]
        if outcome.kind == "dead-letter":
            assert parents == [original]
        else:
            assert len(parents) == 1
            assert parents[0] != original
            assert TRACE_ID.encode() not in parents[0]


def _record_spans(received: list[ExportTraceServiceRequest], topic: str) -> int:
    return sum(
        1
        for m in received for rs in m.resource_spans for ss in rs.scope_spans for s in ss.spans
        if s.name == f"{topic} process"
    )  # fmt: skip


async def test_spans_reach_an_otlp_http_receiver_configured_by_the_environment(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """`processor run` with tracing on and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set sends its
    spans as OTLP/HTTP protobuf, with OTEL_SERVICE_NAME as the service name."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        topics = unique_topics("otlp")
        await create_topics(kafka_bootstrap, topics, partitions=1)
        corpus = build_corpus(30, keys=5, seed=17)
        coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
        config = _traced_config(tmp_path / "p.yaml", kafka_bootstrap, simulator_url, topics)
        env = {**os.environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
               f"http://127.0.0.1:{port}/v1/traces", "OTEL_SERVICE_NAME": "validator-under-test",
               "OTEL_BSP_SCHEDULE_DELAY": "200"}  # fmt: skip
        async with cli_processes() as cli:
            proc = await cli.start(config, tmp_path / "p.log", env=env)
            assert await OutcomeCollector(kafka_bootstrap, topics).collect(set(coords), 60)
            await wait_until(
                lambda: _record_spans(received, topics.input) >= len(corpus) or exited(proc)(),
                30, "the spans of every record",
            )  # fmt: skip
            assert await proc.stop() == 0
    finally:
        await runner.cleanup()
    assert _record_spans(received, topics.input) == len(corpus)
    names = {
        a.value.string_value
        for m in received for rs in m.resource_spans for a in rs.resource.attributes
        if a.key == "service.name"
    }  # fmt: skip
    assert names == {"validator-under-test"}
