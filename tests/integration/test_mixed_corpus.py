"""The whole processor against a real broker and the real upstream simulator."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from devtools.corpus import build_corpus
from devtools.reconcile import OutcomeCollector, publish_corpus, reconcile
from processor.app import App
from schemas.outcomes import DLQ_HEADERS
from tests.support.setup import create_topics, settings_for, unique_topics


async def test_mixed_corpus_lands_every_record_once_where_expected_in_key_order(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """2,400 mixed records over 30 keys and 4 partitions each get exactly one expected outcome,
    dead letters keep their bytes, and each key's outcomes keep input order."""
    topics = unique_topics("mixed")
    await create_topics(kafka_bootstrap, topics, partitions=4)
    corpus = build_corpus(2_400, keys=30, seed=11)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    assert len({p for p, _ in coords}) == 4

    app = App(settings_for(tmp_path, kafka_bootstrap, simulator_url, topics))
    run = asyncio.create_task(app.run())
    collector = OutcomeCollector(kafka_bootstrap, topics)
    complete = await collector.collect(set(coords), timeout_s=180, settle_s=1.0)
    app.request_stop()
    exit_code = await asyncio.wait_for(run, 60)

    result = reconcile(corpus, coords, collector.seen)
    assert complete, f"missing outcomes for {len(result.missing)} inputs"
    assert exit_code == 0
    assert result.missing == []
    assert result.wrong == []
    assert result.duplicates == 0
    assert set(result.by_topic) == {"valid", "invalid", "dead-letter"}

    by_coords = dict(zip(coords, corpus, strict=True))
    for outcome in collector.in_order:
        if outcome.kind != "dead-letter":
            continue
        original = by_coords[outcome.input]
        assert outcome.key == original.key
        assert outcome.value == original.value
        names = [name for name, _ in outcome.headers]
        assert names[: len(original.headers)] == [name for name, _ in original.headers]
        assert set(DLQ_HEADERS) <= set(names)
        assert dict(outcome.headers)["dlq.original.topic"] == topics.input.encode()

    offsets_by_key: dict[tuple[str, bytes | None], list[int]] = defaultdict(list)
    for outcome in sorted(collector.in_order, key=lambda o: (o.kind, o.partition, o.offset)):
        offsets_by_key[(outcome.kind, outcome.key)].append(outcome.input[1])
    for (kind, key), offsets in offsets_by_key.items():
        assert offsets == sorted(offsets), f"{kind} outcomes of key {key!r} out of input order"
