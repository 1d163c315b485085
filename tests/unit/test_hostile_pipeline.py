"""Property: whatever bytes and headers arrive, the pipeline gives one outcome with a
bad-input reason (never internal.error) and the publisher sends it (no Kafka, no checks)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from devtools.hostile import BAD_INPUT, MAX_RECORD_BYTES, hostile_corpus
from processor.config import TopicsConfig, ValidationConfig
from processor.inputs import Record
from processor.outcomes import DeadLetter, OutcomePublisher, outcome_label
from processor.pipeline import Pipeline
from processor.record_types import PydanticRecordType, RecordTypes
from schemas import RECORD_TYPES
from schemas.outcomes import ProcessorInfo

EXAMPLES = 5_000
TOPICS = TopicsConfig(input="in", valid="v", invalid="i", dead_letter="d")


class CountingProducer:
    """Accepts what the real producer accepts: bytes or None; counts what was sent where."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        assert value is None or isinstance(value, bytes)
        assert all(isinstance(k, str) for k, _ in headers or [])
        self.sent[topic] += 1
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_every_generated_hostile_record_gets_one_bad_input_outcome() -> None:
    """5,000 generated records of every hostile class: each outcome is valid, or invalid or
    dead-lettered with a bad-input reason, and each is published exactly once."""
    types = RecordTypes([PydanticRecordType(n, m) for n, m in RECORD_TYPES.items()])
    pipeline = Pipeline(
        record_types=types, checks={}, validation=ValidationConfig(),
        max_record_bytes=MAX_RECORD_BYTES,
        processor=ProcessorInfo(name="p", version="0", instance="t"),
    )  # fmt: skip
    producer = CountingProducer()
    publisher = OutcomePublisher(producer, TOPICS, "p/t")
    labels: Counter[str] = Counter()
    for offset, hostile in enumerate(hostile_corpus(EXAMPLES, seed=99)):
        record = Record("in", 0, offset, 0, hostile.key, hostile.value, hostile.headers)  # type: ignore[arg-type]
        outcome = await pipeline.process(record)
        kind, reason = outcome_label(outcome)
        assert kind == "valid" or reason in BAD_INPUT, (hostile.label, kind, reason)
        if isinstance(outcome, DeadLetter):
            assert outcome.reason.value != "internal.error"
        await (await publisher.publish(record, outcome))
        labels[f"{kind}:{reason}"] += 1
    assert sum(producer.sent.values()) == EXAMPLES
    assert len(labels) >= 4, labels  # the corpus reaches every kind of bad input
