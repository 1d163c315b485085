"""CPU per record of the processor's hot path without Kafka: the pipeline and the publisher.

Measured for issue 15 (outcome encoding and the per-record costs around it). No broker, no
HTTP: ``Pipeline.process`` runs over ``devtools.corpus.bench_records`` (valid customers, as
in ``make bench``) one record after another, then ``OutcomePublisher.publish`` hands each
outcome to a producer that acknowledges at once, so what is timed is the processor's own
Python. ``--check`` adds one e-mail check answered by an in-process caller (the check's own
code and its ``CheckResult``, no HTTP); ``--resilient`` puts that caller behind the service's
resilience stack and metrics, built as ``processor.app`` builds them (cache, coalescing,
breaker, limiter, retries; every e-mail is new, so every call is a cache miss). Each stage
runs ``--rounds`` times over ``--records`` records; the figures are CPU microseconds per
record (``time.process_time``), the best and the median round, garbage collection included
(as in the service). The
``partition`` stage is the partitioner the service's producers are built with, choosing
among 6 partitions for each record's key (aiokafka's own where none is configured). Run from
the repository root, before and after a change, on the same machine::

    .venv/bin/python docs/bench/hot_path.py [--records 20000] [--rounds 7] [--check] [--resilient]

Only public interfaces are used, so the same script measures any commit.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # devtools: not installed

from devtools.corpus import bench_records
from processor.checkplan import CheckConfig
from processor.checks import Check
from processor.config import KafkaConfig, TopicsConfig, UpstreamConfig, ValidationConfig
from processor.inputs import Record
from processor.kafka.factory import producer_kwargs
from processor.metrics import Metrics
from processor.outcomes import Outcome, OutcomePublisher
from processor.pipeline import Pipeline
from processor.record_types import PydanticRecordType, RecordTypes
from processor.upstream import UpstreamRequest, UpstreamResponse
from processor.upstream.breaker import CircuitBreaker
from processor.upstream.cache import ResponseCache
from processor.upstream.client import Caller
from processor.upstream.limiter import TokenBucket
from processor.upstream.resilient import ResilientCaller
from processor.waits import WaitBoard
from schemas import RECORD_TYPES
from schemas.outcomes import ProcessorInfo


class InstantCaller:
    """An upstream caller that answers every e-mail check at once, deliverable."""

    name = "email"

    async def call(self, request: UpstreamRequest) -> UpstreamResponse:
        body = {"deliverable": True, "reason": None, "score": 0.97, "mx": ["mx1.example"]}
        return UpstreamResponse(status=200, body=body, latency_ms=20.0)


class AckingProducer:
    """A producer whose every send is acknowledged already."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None,
        partition: int | None = None, timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:  # fmt: skip
        self.sent += 1
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _resilient(caller: Caller, metrics: Metrics) -> ResilientCaller:
    """``caller`` behind the resilience stack, as ``processor.app`` builds it."""
    cfg = UpstreamConfig(base_url="http://127.0.0.1:1")
    observer = metrics.upstream(caller.name)
    return ResilientCaller(
        caller, retry=cfg.retry, max_concurrency=cfg.max_concurrency,
        breaker=CircuitBreaker(caller.name, cfg.breaker, WaitBoard(),
                               on_change=observer.breaker_changed),
        limiter=TokenBucket(cfg.rate_limit_rps, cfg.rate_limit_burst),
        cache=ResponseCache(cfg.cache.ttl_s, cfg.cache.max_entries), observer=observer,
    )  # fmt: skip


def _pipeline(with_check: bool, resilient: bool) -> Pipeline:
    types = RecordTypes([PydanticRecordType(n, m) for n, m in RECORD_TYPES.items()])
    checks: dict[str, list[Check]] = {}
    if with_check or resilient:
        config = CheckConfig(
            name="email_deliverable", upstream="email", path="/v1/email/verify",
            body={"email": "email"}, pass_field="deliverable", reason_field="reason",
        )  # fmt: skip
        caller: Caller = InstantCaller()
        if resilient:
            metrics = Metrics()
            caller = _resilient(caller, metrics)
            check = Check(config, caller, None, metrics.check_seconds.labels(config.name).observe)
        else:
            check = Check(config, caller)
        checks["customer.v1"] = [check]
    info = ProcessorInfo(name="record-processor", version="bench", instance="bench-0")
    return Pipeline(record_types=types, checks=checks, validation=ValidationConfig(),
                    max_record_bytes=1_048_576, processor=info)  # fmt: skip


def _records(count: int) -> list[Record]:
    made = []
    for i, r in enumerate(bench_records(count)):
        made.append(Record(topic="records.in", partition=i % 8, offset=i,
                           timestamp=1_764_000_000_000 + i, key=r.key, value=r.value,
                           headers=list(r.headers)))  # fmt: skip
    return made


def _rounds(
    loop: asyncio.AbstractEventLoop, rounds: int, count: int,
    stage: Callable[[], Coroutine[Any, Any, None]],
) -> list[float]:  # fmt: skip
    per_record = []
    for _ in range(rounds):
        started = time.process_time()
        loop.run_until_complete(stage())
        per_record.append((time.process_time() - started) / count * 1e6)
    return per_record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="one e-mail check per record")
    parser.add_argument("--resilient", action="store_true", help="--check, behind resilience")
    args = parser.parse_args(argv)
    records = _records(args.records)
    pipeline = _pipeline(args.check, args.resilient)
    producer = AckingProducer()
    publisher = OutcomePublisher(producer, TopicsConfig(), processor_id="bench-0")
    outcomes: list[Outcome] = []

    async def process() -> None:
        outcomes.clear()
        for record in records:
            outcomes.append(await pipeline.process(record))

    async def publish() -> None:
        for record, outcome in zip(records, outcomes, strict=True):
            await publisher.publish(record, outcome)

    async def both() -> None:
        for record in records:
            await publisher.publish(record, await pipeline.process(record))

    partitioner = producer_kwargs(KafkaConfig()).get("partitioner", DefaultPartitioner())
    partitions = list(range(6))

    async def partition() -> None:
        for record in records:
            partitioner(record.key, partitions, partitions)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(process())  # warm-up: caches, lazily built validators
    kinds = sorted({type(o).__name__ for o in outcomes})
    print(f"{args.records} records, {args.rounds} rounds, check={args.check},"
          f" resilient={args.resilient}, outcomes {kinds}")  # fmt: skip
    stages = (("pipeline", process), ("publish", publish), ("both", both), ("partition", partition))
    for name, stage in stages:
        figures = _rounds(loop, args.rounds, args.records, stage)
        print(f"{name:9s} CPU us/record: best {min(figures):6.2f}"
              f"  median {statistics.median(figures):6.2f}")  # fmt: skip
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
