"""Publishing a corpus and reconciling what came out: the demo's and the tests' referee.

:func:`publish_corpus` writes records to the input topic and returns where each landed.
:class:`OutcomeCollector` reads the three outcome topics from the beginning (no group)
and maps every outcome back to its input coordinates: from the outcome document's
``input`` for valid/invalid, from the ``dlq.original.*`` headers for dead letters.
:func:`read_to_end` reads them all once, as a ``read_committed`` (exactly-once) or
``read_uncommitted`` consumer sees them.
:func:`reconcile` compares that with what each record was expected to get.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devtools.corpus import CorpusRecord, OutcomeTopic
from processor.config import TopicsConfig
from schemas.envelope import STRUCTURED_CONTENT_TYPE

Coordinates = tuple[int, int]  # input partition, offset


@dataclass(frozen=True, slots=True)
class SeenOutcome:
    """One record read from an outcome topic, mapped back to its input."""

    kind: OutcomeTopic
    reason: str
    input: Coordinates
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int


async def publish_corpus(
    bootstrap: str, topic: str, corpus: Sequence[CorpusRecord]
) -> list[Coordinates]:
    """Produce every record (acks=all) and return its (partition, offset), in corpus order."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
        max_request_size=2 * 1024 * 1024,
    )  # fmt: skip
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=r.value, key=r.key, headers=list(r.headers))
            for r in corpus
        ]
        metas = await asyncio.wait_for(asyncio.gather(*futures), 120)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metas]


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode()
    return None


def _to_seen(kind: OutcomeTopic, msg: object) -> SeenOutcome:
    headers = tuple(getattr(msg, "headers", ()) or ())
    value: bytes | None = getattr(msg, "value", None)
    if kind == "dead-letter":
        reason = _header(headers, "dlq.reason") or "?"
        coords = (int(_header(headers, "dlq.original.partition") or -1),
                  int(_header(headers, "dlq.original.offset") or -1))  # fmt: skip
    elif (where := _header(headers, "record.input")) is not None and _header(
        headers, "content-type"
    ) == STRUCTURED_CONTENT_TYPE:  # the record payload: the verdict travels in headers
        reasons = json.loads(_header(headers, "record.reasons") or "[]")
        reason = reasons[0]["code"] if reasons else "ok"
        _, partition, offset = where.rsplit("/", 2)
        coords = (int(partition), int(offset))
    else:
        doc = json.loads(value or b"{}")
        reason = doc["reasons"][0]["code"] if doc["reasons"] else "ok"
        coords = (doc["input"]["partition"], doc["input"]["offset"])
    return SeenOutcome(
        kind=kind, reason=reason, input=coords, partition=getattr(msg, "partition", -1),
        offset=getattr(msg, "offset", -1), key=getattr(msg, "key", None), value=value,
        headers=headers, timestamp=getattr(msg, "timestamp", -1),
    )  # fmt: skip


@dataclass
class OutcomeCollector:
    """Reads the outcome topics until every expected input has an outcome (or a deadline)."""

    bootstrap: str
    topics: TopicsConfig
    seen: dict[Coordinates, list[SeenOutcome]] = field(default_factory=lambda: defaultdict(list))
    in_order: list[SeenOutcome] = field(default_factory=list)

    async def collect(
        self,
        expected: set[Coordinates],
        timeout_s: float,
        on_progress: Callable[[int], None] | None = None,
        settle_s: float = 0.0,
        give_up: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Read until every coordinate in ``expected`` has been seen; True if so in time.

        ``settle_s`` keeps reading that long after the last one arrives, to catch duplicates.
        ``give_up`` is asked after every poll; True ends the wait early (the producer died).
        """
        kinds: dict[str, OutcomeTopic] = {
            self.topics.valid: "valid",
            self.topics.invalid: "invalid",
            self.topics.dead_letter: "dead-letter",
        }
        consumer = AIOKafkaConsumer(
            *kinds, bootstrap_servers=self.bootstrap, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False,
            max_partition_fetch_bytes=2 * 1024 * 1024,
        )  # fmt: skip
        await consumer.start()
        deadline = time.monotonic() + timeout_s
        done_at: float | None = None
        try:
            while time.monotonic() < deadline and not give_up():
                batches = await consumer.getmany(timeout_ms=200, max_records=5_000)
                for tp, msgs in batches.items():
                    for msg in msgs:
                        outcome = _to_seen(kinds[tp.topic], msg)
                        self.seen[outcome.input].append(outcome)
                        self.in_order.append(outcome)
                if on_progress is not None:
                    on_progress(len(expected & self.seen.keys()))
                if done_at is None and expected <= self.seen.keys():
                    done_at = time.monotonic()
                if done_at is not None and time.monotonic() - done_at >= settle_s:
                    return True
            return expected <= self.seen.keys()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 10)


async def read_to_end(
    bootstrap: str, topics: TopicsConfig, isolation_level: str, timeout_s: float = 60.0
) -> dict[Coordinates, list[SeenOutcome]]:
    """Every outcome the three outcome topics hold, by input, as a consumer with
    ``isolation_level`` sees them (read once no transaction is open: the end is then the
    high watermark, markers and aborted records included, which read_committed skips)."""
    kinds: dict[str, OutcomeTopic] = {
        topics.valid: "valid", topics.invalid: "invalid", topics.dead_letter: "dead-letter",
    }  # fmt: skip
    consumer = AIOKafkaConsumer(
        *kinds, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level=isolation_level,
        max_partition_fetch_bytes=2 * 1024 * 1024,
    )  # fmt: skip
    seen: dict[Coordinates, list[SeenOutcome]] = defaultdict(list)
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            while not (tps := consumer.assignment()):  # every partition, once metadata came
                await consumer.getmany(timeout_ms=100)
            ends = await consumer.end_offsets(list(tps))
            left = {tp for tp in tps if ends[tp] > 0}
            while left:
                batches = await consumer.getmany(timeout_ms=200, max_records=5_000)
                for tp, msgs in batches.items():
                    for msg in msgs:
                        outcome = _to_seen(kinds[tp.topic], msg)
                        seen[outcome.input].append(outcome)
                left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 10)
    return seen


@dataclass
class Reconciliation:
    """How the outcomes compare with the corpus's expectations."""

    total: int
    missing: list[int]  # corpus indexes with no outcome
    wrong: list[tuple[int, str, str]]  # index, expected "topic/reason", got "topic/reason"
    duplicates: int  # outcomes beyond the first for one input
    by_topic: Counter[str]
    by_reason: Counter[str]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.wrong


def reconcile(
    corpus: Sequence[CorpusRecord],
    coords: Sequence[Coordinates],
    seen: dict[Coordinates, list[SeenOutcome]],
) -> Reconciliation:
    """Check every input has an outcome in the expected topic with the expected reason."""
    missing, wrong = [], []
    by_topic: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    duplicates = 0
    for i, (record, where) in enumerate(zip(corpus, coords, strict=True)):
        outs = seen.get(where, [])
        if not outs:
            missing.append(i)
            continue
        duplicates += len(outs) - 1
        first = outs[0]
        by_topic[first.kind] += 1
        by_reason[f"{first.kind}/{first.reason}"] += 1
        if any((o.kind, o.reason) != (record.expected_topic, record.expected_reason) for o in outs):
            got = ", ".join(f"{o.kind}/{o.reason}" for o in outs)
            wrong.append((i, f"{record.expected_topic}/{record.expected_reason}", got))
    return Reconciliation(len(corpus), missing, wrong, duplicates, by_topic, by_reason)
