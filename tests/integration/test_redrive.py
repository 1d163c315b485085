"""``processor dlq redrive`` on the real broker: dead letters of an upstream outage go back
and reach one final outcome each; records that keep failing are parked after N rounds."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from devtools.corpus import build_corpus
from devtools.reconcile import publish_corpus
from processor.config import KafkaConfig, TopicsConfig, load_settings
from processor.kafka import ensure_topics, topic_partitions
from tests.support.services import simulator_process
from tests.support.setup import create_topics, running_app, unique_topics, write_config
from tests.support.sim import SimControl
from tests.support.watch import outcome_records

MAX_REDRIVES = 2
CLI_TIMEOUT_S = 60.0
OUTCOMES_TIMEOUT_S = 90.0
#: No breaker and one attempt: an outage dead-letters every record that calls an upstream.
FRAGILE = {"breaker": {"enabled": False}, "retry": {"max_attempts": 1, "budget_s": 1.0}}

Coords = tuple[int, int]


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` now (up to its end offsets)."""
    known = await topic_partitions(KafkaConfig(bootstrap_servers=bootstrap), [topic])
    tps = [TopicPartition(topic, p) for p in known[topic]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")  # fmt: skip
    await asyncio.wait_for(consumer.start(), 30)
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            batches = await asyncio.wait_for(consumer.getmany(*left, timeout_ms=500), 30)
            for tp, records in batches.items():
                out.extend(records)
                if records and records[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return out
    finally:
        await asyncio.wait_for(consumer.stop(), 10)


def _header(record: Any, name: str) -> str | None:
    return next((v.decode() for k, v in record.headers if k == name), None)


def _coords(text: str) -> Coords:
    _, partition, offset = text.rsplit("/", 2)
    return int(partition), int(offset)


async def _outcomes_reach(bootstrap: str, topics: TopicsConfig, total: int) -> None:
    """Wait until the outcome topics hold ``total`` records (and not more)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OUTCOMES_TIMEOUT_S
    while (seen := await outcome_records(bootstrap, topics)) < total:
        if loop.time() >= deadline:
            raise TimeoutError(f"{seen} of {total} outcomes within {OUTCOMES_TIMEOUT_S}s")
        await asyncio.sleep(0.2)  # the poll interval of a bounded wait
    assert seen == total, f"{seen} outcomes, expected {total}"


async def _redrive(config: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processor.cli", "dlq", "redrive", "--config", str(config),
        "--max-redrives", str(MAX_REDRIVES), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def _reasons(summary: str, verb: str) -> Counter[str]:
    """The count per reason after ``verb`` in the redrive's summary."""
    line = next((x for x in summary.splitlines() if x.startswith(verb)), f"{verb} 0:")
    pairs = (part.rsplit(" ", 1) for part in line.split(": ", 1)[1].split(", ") if part)
    return Counter({reason: int(n) for reason, n in pairs})


def _count(summary: str, verb: str) -> int:
    """The number after ``verb`` in the redrive's summary (0 when the line is absent)."""
    line = next((x for x in summary.splitlines() if x.startswith(verb)), f"{verb} 0:")
    return int(line.removeprefix(verb).split(":")[0])


class Lineage:
    """Each input's original coordinates, through however many redrives."""

    def __init__(self, inputs: list[Any]) -> None:
        self.origin: dict[Coords, Coords] = {}
        for record in inputs:
            here = (record.partition, record.offset)
            origin = _header(record, "redrive.origin")
            self.origin[here] = _coords(origin) if origin else here

    def finals(self, valid: list[Any], invalid: list[Any]) -> dict[Coords, list[str]]:
        """Per original input, the valid and invalid outcomes of all its generations."""
        found: dict[Coords, list[str]] = defaultdict(list)
        for kind, records in (("valid", valid), ("invalid", invalid)):
            for record in records:
                doc = json.loads(record.value)
                here = (doc["input"]["partition"], doc["input"]["offset"])
                reason = doc["reasons"][0]["code"] if doc["reasons"] else "ok"
                found[self.origin[here]].append(f"{kind}/{reason}")
        return found

    def of_dead_letters(self, records: list[Any]) -> Iterator[Coords]:
        for record in records:
            here = (int(_header(record, "dlq.original.partition") or -1),
                    int(_header(record, "dlq.original.offset") or -1))  # fmt: skip
            yield self.origin[here]


async def test_redrive_after_an_outage_gives_each_dead_letter_one_final_outcome(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Records dead-lettered by an upstream outage reach exactly their expected outcome once
    redriven after it; records that fail every time are parked after N rounds, once each."""
    topics = unique_topics("redrive")
    park = f"{topics.dead_letter}.parked"
    await create_topics(kafka_bootstrap, topics, partitions=3)
    await ensure_topics(kafka_bootstrap, [park], 1)
    corpus = build_corpus(240, keys=20, seed=41)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    with simulator_process() as url:
        sim = SimControl(url)
        fragile = {name: FRAGILE for name in ("email", "vat", "sanctions")}
        config = write_config(
            tmp_path / "processor.yaml", kafka_bootstrap, url, topics, upstreams=fragile
        )
        await sim.control(outage_for_s=600)
        async with running_app(load_settings(config)):
            expected = len(corpus)

            await _outcomes_reach(kafka_bootstrap, topics, expected)
            outage_dead = len(await _read_all(kafka_bootstrap, topics.dead_letter))
            await sim.control(outage_for_s=0)

            dry = await _redrive(config, "--dry-run")
            assert _count(dry, "would send back") == outage_dead
            first = await _redrive(config, "--max", "100")  # stopped early, then resumed
            rest = await _redrive(config)
            assert _count(first, "sent back") == 100
            # the second pass also takes what the first sent back and failed again (not
            # upstream: the upstream is back), but no dead letter of the outage twice
            outage = _reasons(dry, "would send back")["upstream.unavailable"]
            resumed = [_reasons(x, "sent back")["upstream.unavailable"] for x in (first, rest)]
            assert sum(resumed) == outage, (first, rest)
            expected += _count(first, "sent back") + _count(rest, "sent back")
            await _outcomes_reach(kafka_bootstrap, topics, expected)
            rounds = [first, rest]
            while _count(rounds[-1], "sent back") or _count(rounds[-1], "parked"):
                assert len(rounds) <= MAX_REDRIVES + 3, rounds
                rounds.append(await _redrive(config))
                expected += _count(rounds[-1], "sent back")
                await _outcomes_reach(kafka_bootstrap, topics, expected)

    inputs = await _read_all(kafka_bootstrap, topics.input)
    lineage = Lineage(inputs)
    finals = lineage.finals(
        await _read_all(kafka_bootstrap, topics.valid),
        await _read_all(kafka_bootstrap, topics.invalid),
    )
    parked = list(lineage.of_dead_letters(await _read_all(kafka_bootstrap, park)))
    upstream_dead = 0
    for record, where in zip(corpus, coords, strict=True):
        if record.expected_topic == "dead-letter":
            assert finals[where] == [], f"{record.label} got {finals[where]}"
            assert parked.count(where) == 1, f"{record.label} parked {parked.count(where)}x"
        else:
            assert finals[where] == [f"{record.expected_topic}/{record.expected_reason}"], (
                f"{record.label} at {where}: {finals[where]}"
            )
            upstream_dead += record.expected_reason != "schema.invalid"
    born_dead = sum(r.expected_topic == "dead-letter" for r in corpus)
    assert outage_dead == upstream_dead + born_dead, rounds
    assert sum(_count(r, "parked") for r in rounds) == born_dead
    assert len(parked) == born_dead
    print("\n".join(rounds))
