"""delivery: exactly_once on the real broker: one committed outcome per input, and fencing.

A read_committed consumer of the three outcome topics must find exactly one outcome per
input. A producer started with a partition's transactional id fences the one before it: the
old one cannot commit, and a processor whose producers were fenced drops that work, commits
nothing more for those partitions, and keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from structlog.testing import capture_logs

from devtools.reconcile import publish_corpus, read_to_end, reconcile
from processor.config import KafkaConfig, load_settings
from processor.errors import PartitionFenced
from processor.kafka import TransactionalProducers
from tests.support.setup import (
    create_topics,
    exactly_once_config,
    running_app,
    schema_only_corpus,
    unique_topics,
)
from tests.support.waiting import wait_until
from tests.support.watch import committed_offsets, wait_committed

TIMEOUT_S = 60.0


async def _values(bootstrap: str, topic: str, isolation_level: str) -> list[bytes | None]:
    """Every value of partition 0 of ``topic`` as a consumer with ``isolation_level`` sees it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, isolation_level=isolation_level
    )
    await asyncio.wait_for(consumer.start(), TIMEOUT_S)
    tp = TopicPartition(topic, 0)
    values: list[bytes | None] = []
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        async with asyncio.timeout(TIMEOUT_S):
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(timeout_ms=200)
                values += [r.value for batch in batches.values() for r in batch]
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 10)
    return values


async def test_an_exactly_once_run_leaves_one_committed_outcome_per_input(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Every input of an exactly-once run has exactly one outcome for a read_committed
    consumer, in its expected topic, and the outcome topics hold transaction markers."""
    topics = unique_topics("eos")
    await create_topics(kafka_bootstrap, topics, partitions=4)
    corpus = schema_only_corpus(3_000, keys=40, seed=41)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    settings = load_settings(exactly_once_config(tmp_path / "p.yaml", kafka_bootstrap, topics))
    async with running_app(settings):
        await wait_committed(
            kafka_bootstrap, settings.kafka.group_id, topics.input, coords, TIMEOUT_S
        )
    seen = await read_to_end(kafka_bootstrap, topics, "read_committed")
    result = reconcile(corpus, coords, seen)
    assert result.missing == []
    assert result.duplicates == 0
    assert result.wrong == []
    assert set(seen) == set(coords)
    assert set(result.by_topic) == {"valid", "invalid", "dead-letter"}


async def test_a_producer_started_with_the_same_transactional_id_fences_the_first(
    kafka_bootstrap: str,
) -> None:
    """The second producer of an input partition fences the first: the first's commit fails
    with PartitionFenced, its outcome is aborted, and only the second's commit counts."""
    topics = unique_topics("fence")
    await create_topics(kafka_bootstrap, topics, partitions=1)
    config = KafkaConfig(bootstrap_servers=kafka_bootstrap, group_id=f"group-{topics.input}")
    tp = (topics.input, 0)
    old, new = TransactionalProducers(config), TransactionalProducers(config)
    try:
        await old.open([tp])
        await (await old.producer_for(tp).send(topics.valid, value=b"zombie", key=b"k"))
        await new.open([tp])  # InitProducerId: fences the old producer, aborts its transaction
        with pytest.raises(PartitionFenced):
            await old.commit(tp, 1)
        await (await new.producer_for(tp).send(topics.valid, value=b"owner", key=b"k"))
        await new.commit(tp, 1)
    finally:
        await old.close_all()
        await new.close_all()
    assert await _values(kafka_bootstrap, topics.valid, "read_committed") == [b"owner"]
    assert await _values(kafka_bootstrap, topics.valid, "read_uncommitted") == [
        b"zombie",
        b"owner",
    ]
    assert await committed_offsets(kafka_bootstrap, config.group_id, topics.input) == {0: 1}


async def test_a_processor_whose_partitions_were_taken_over_commits_nothing_more_for_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A processor whose producers another instance fenced logs each partition lost, drops
    its work there without a commit (committed offsets stay, no outcome of the later
    inputs becomes visible), and keeps running until it is stopped (exit 0)."""
    topics = unique_topics("zombie")
    await create_topics(kafka_bootstrap, topics, partitions=2)
    settings = load_settings(exactly_once_config(tmp_path / "p.yaml", kafka_bootstrap, topics))
    group = settings.kafka.group_id
    first = schema_only_corpus(400, keys=20, seed=43)
    partitions = [(topics.input, 0), (topics.input, 1)]
    usurper = TransactionalProducers(settings.kafka)
    with capture_logs() as logs:
        async with running_app(settings):
            coords = await publish_corpus(kafka_bootstrap, topics.input, first)
            await wait_committed(kafka_bootstrap, group, topics.input, coords, TIMEOUT_S)
            before = await committed_offsets(kafka_bootstrap, group, topics.input)
            try:
                await usurper.open(partitions)  # what a new owner of both partitions does
                later = await publish_corpus(
                    kafka_bootstrap, topics.input, schema_only_corpus(400, keys=20, seed=47)
                )
                assert {p for p, _ in later} == {0, 1}

                def lost() -> set[int]:
                    return {e["partition"] for e in logs if e["event"] == "engine.partition_lost"}

                await wait_until(lambda: lost() == {0, 1}, TIMEOUT_S, "both partitions lost")
                assert await committed_offsets(kafka_bootstrap, group, topics.input) == before
            finally:
                await usurper.close_all()
    seen = await read_to_end(kafka_bootstrap, topics, "read_committed")
    assert set(seen) == set(coords)
    assert all(len(outcomes) == 1 for outcomes in seen.values())
    assert not [e for e in logs if e["event"] == "engine.fatal"]
