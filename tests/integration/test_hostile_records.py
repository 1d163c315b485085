"""Records whose outcome cannot be published as it is get a fallback dead letter; the
processor keeps running (the three classes an evaluation found stopping it for good)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import RecordMetadata

from devtools.hostile import BAD_INPUT, hostile_corpus
from devtools.reconcile import OutcomeCollector
from tests.support.setup import create_topics, running_app, settings_for, unique_topics

NEAR_BROKER_LIMIT = 1_048_576 - 400  # over max_record_bytes, near the producer's request size


def _event(record_id: str, data: str) -> bytes:
    """A structured CloudEvent whose ``data`` is the JSON text given, as it is."""
    head = json.dumps(
        {"specversion": "1.0", "id": record_id, "source": "/hostile", "type": "customer.v1"}
    )
    return f'{head[:-1]}, "data": {data}}}'.encode()


CUSTOMER = {"company_name": "Acme GmbH", "email": "ops@acme.de", "country": "DE"}
GOOD = _event("h-good", json.dumps(CUSTOMER))
HOSTILE: list[tuple[str, bytes | None, bytes | None]] = [
    ("null key and null value", None, None),
    ("lone surrogate in a value", b"k1", _event("h-1", '{"company_name": "\\ud800"}')),
    ("lone surrogate in a field name", b"k2", _event("h-2", '{"\\ud800": 1}')),
    ("value near the request limit", b"k3", b"x" * NEAR_BROKER_LIMIT),
]


async def _send_raw(
    producer: AIOKafkaProducer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> asyncio.Future[RecordMetadata]:
    """Send as other clients may: aiokafka's own send refuses a null key with a null value
    and header values that are not bytes, so those records go straight to its accumulator
    (partition 0)."""
    if (key is not None or value is not None) and all(v is not None for _, v in headers):
        sent: asyncio.Future[RecordMetadata] = await producer.send(
            topic,
            value=value,
            key=key,
            headers=list(headers) or None,
        )
        return sent
    await producer.client._wait_on_metadata(topic)
    future: asyncio.Future[RecordMetadata] = await producer._message_accumulator.add_message(
        TopicPartition(topic, 0), key, value, 30.0, timestamp_ms=None, headers=list(headers)
    )
    return future


async def test_hostile_records_get_a_dead_letter_and_the_processor_keeps_going(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """Each hostile record gets exactly one outcome (a dead letter that fits, saying why the
    value was left out), and a good record after them is validated: nothing stops the run."""
    topics = unique_topics("hostile")
    await create_topics(kafka_bootstrap, topics, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2_097_152)
    await producer.start()
    try:
        sent = [await _send_raw(producer, topics.input, k, v) for _, k, v in HOSTILE]
        sent.append(await producer.send(topics.input, value=GOOD, key=b"good"))
        metas = await asyncio.wait_for(asyncio.gather(*sent), 60)
    finally:
        await producer.stop()
    coords = {(m.partition, m.offset) for m in metas}

    settings = settings_for(tmp_path, kafka_bootstrap, simulator_url, topics)
    async with running_app(settings):  # on exit: a graceful stop with exit code 0
        collector = OutcomeCollector(kafka_bootstrap, topics)
        assert await collector.collect(coords, timeout_s=60, settle_s=0.5)

    by_offset = {outcome.input[1]: outcome for outcome in collector.in_order}
    assert len(collector.in_order) == len(coords), "exactly one outcome per input"
    for (label, _, value), meta in zip(HOSTILE, metas, strict=False):
        outcome = by_offset[meta.offset]
        headers = dict(outcome.headers)
        assert outcome.kind == "dead-letter", label
        assert headers["dlq.reason"] in (b"decode.failed", b"record.too_large"), label
        assert outcome.value == b"", label
        expected_size = b"null" if value is None else str(len(value)).encode()
        assert headers["dlq.value.bytes"] == expected_size, label
        assert headers["dlq.value.omitted"], label
    assert dict(by_offset[metas[-1].offset].headers).get("dlq.reason") is None
    assert by_offset[metas[-1].offset].kind == "valid"


async def test_an_outcome_the_broker_refuses_after_sending_gets_a_fallback_dead_letter(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """The invalid topic's max.message.bytes is smaller than one record's outcome document:
    the broker refuses it after the producer accepted it; the record gets a fallback dead
    letter, and the records around it get their outcomes as usual."""
    topics = unique_topics("refused")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await asyncio.wait_for(admin.start(), 30)
    try:
        small = {"max.message.bytes": "20000"}
        new = [NewTopic(topics.input, 1, 1), NewTopic(topics.valid, 1, 1),
               NewTopic(topics.invalid, 1, 1, topic_configs=small),
               NewTopic(topics.dead_letter, 1, 1)]  # fmt: skip
        await asyncio.wait_for(admin.create_topics(new), 30)
    finally:
        await asyncio.wait_for(admin.close(), 10)
    big_invalid = _event("h-big", json.dumps({**CUSTOMER, "email": "x" * 30_000}))
    small_invalid = _event("h-small", json.dumps({**CUSTOMER, "email": "not an address"}))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        values = [small_invalid, big_invalid, GOOD, small_invalid]
        sent = [await producer.send(topics.input, value=v, key=b"k") for v in values]
        metas = await asyncio.wait_for(asyncio.gather(*sent), 60)
    finally:
        await producer.stop()
    settings = settings_for(tmp_path, kafka_bootstrap, simulator_url, topics)
    async with running_app(settings):
        collector = OutcomeCollector(kafka_bootstrap, topics)
        assert await collector.collect({(m.partition, m.offset) for m in metas}, 60, settle_s=0.5)
    kinds = [[o.kind for o in collector.seen[(m.partition, m.offset)]] for m in metas]
    assert kinds == [["invalid"], ["dead-letter"], ["valid"], ["invalid"]]
    (fallback,) = collector.seen[(metas[1].partition, metas[1].offset)]
    headers = dict(fallback.headers)
    assert fallback.value == b""
    assert b"MessageSizeTooLarge" in headers["dlq.value.omitted"]
    assert headers["dlq.value.bytes"] == str(len(big_invalid)).encode()


CORPUS_SIZE = 3_000
#: Outcomes a well-formed record may get from the simulator (a clear yes or no).
GOOD_OUTCOMES = {("valid", "ok"), ("invalid", "upstream.rejected"), ("invalid", "schema.invalid")}


async def test_a_generated_hostile_corpus_gets_one_bad_input_outcome_each_and_never_stops(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """3,000 generated hostile records (every class of devtools.hostile, sizes around every
    limit) each get exactly one outcome; every dead letter and invalid verdict carries a
    bad-input reason, never internal.error; the processor runs on and stops with exit 0."""
    topics = unique_topics("corpus")
    await create_topics(kafka_bootstrap, topics, partitions=3)
    corpus = hostile_corpus(CORPUS_SIZE, seed=2026)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2_097_152)
    await producer.start()
    try:
        sent = [await _send_raw(producer, topics.input, r.key, r.value, r.headers) for r in corpus]
        metas = await asyncio.wait_for(asyncio.gather(*sent), 120)
    finally:
        await producer.stop()
    coords = [(m.partition, m.offset) for m in metas]
    settings = settings_for(tmp_path, kafka_bootstrap, simulator_url, topics)
    async with running_app(settings) as app:  # on exit: a graceful stop with exit code 0
        collector = OutcomeCollector(kafka_bootstrap, topics)
        assert await collector.collect(set(coords), timeout_s=120, settle_s=0.5)
        assert app.status is not None
    assert len(collector.in_order) == len(corpus), "exactly one outcome per input"
    per_class: dict[str, Counter[str]] = defaultdict(Counter)
    wrong = []
    for record, where in zip(corpus, coords, strict=True):
        (outcome,) = collector.seen[where]
        per_class[record.label.split(" (")[0]][f"{outcome.kind}:{outcome.reason}"] += 1
        if record.label == "well-formed" and record.headers == ():
            ok = (outcome.kind, outcome.reason) in GOOD_OUTCOMES
        else:
            ok = outcome.kind == "valid" or outcome.reason in BAD_INPUT | {"upstream.rejected"}
        if not ok:
            wrong.append((record.label, outcome.kind, outcome.reason))
    print("\n".join(f"{label}: {dict(counts)}" for label, counts in sorted(per_class.items())))
    assert wrong == []
    assert not any("internal.error" in counts for c in per_class.values() for counts in c)
