"""The outcome payloads end to end: the record as a CloudEvent on one topic, input headers kept."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from devtools.corpus import build_corpus
from devtools.reconcile import OutcomeCollector, publish_corpus, reconcile
from processor.app import App
from processor.config import OutcomesConfig
from schemas.outcomes import OutcomeDocument
from tests.support.setup import create_topics, settings_for, unique_topics

TRACE = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
TENANT = ("x-tenant", b"acme-eu")


async def test_valid_records_as_cloudevents_invalid_as_documents_headers_propagated(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """With valid_payload=record, every valid outcome is the CloudEvent with normalised data and
    the verdict in headers, invalid ones stay documents, and every outcome keeps the input's
    trace and tenant headers; each input still gets exactly its expected outcome."""
    topics = unique_topics("payloads")
    await create_topics(kafka_bootstrap, topics, partitions=2)
    corpus = [
        dataclasses.replace(r, headers=(TRACE, *r.headers, TENANT))
        for r in build_corpus(300, keys=10, seed=5)
    ]
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    settings = settings_for(tmp_path, kafka_bootstrap, simulator_url, topics)
    settings = settings.model_copy(update={"outcomes": OutcomesConfig(valid_payload="record")})

    app = App(settings)
    run = asyncio.create_task(app.run())
    collector = OutcomeCollector(kafka_bootstrap, topics)
    complete = await collector.collect(set(coords), timeout_s=120)
    app.request_stop()
    assert await asyncio.wait_for(run, 60) == 0
    assert complete

    result = reconcile(corpus, coords, collector.seen)
    assert (result.missing, result.wrong, result.duplicates) == ([], [], 0)
    assert set(result.by_topic) == {"valid", "invalid", "dead-letter"}
    for outcome in collector.in_order:
        headers = dict(outcome.headers)
        assert headers["traceparent"] == TRACE[1], outcome.kind
        assert headers["x-tenant"] == TENANT[1], outcome.kind
        assert outcome.value is not None
        if outcome.kind == "valid":
            event = json.loads(outcome.value)
            assert headers["content-type"] == b"application/cloudevents+json"
            assert headers["record.verdict"] in (b"valid", b"valid_unverified")
            checks = json.loads(headers["record.checks"])
            assert checks, "every built-in type has checks"
            assert set(checks.values()) <= {"passed", "skipped", "unverified"}
            assert {"id", "type", "source", "specversion", "data"} <= event.keys()
            assert not any(name.startswith("ce_") for name in headers)
        elif outcome.kind == "invalid":
            doc = OutcomeDocument.model_validate_json(outcome.value)
            assert headers["content-type"] == b"application/json"
            assert doc.verdict.value == "invalid"
