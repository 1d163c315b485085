"""Before and after, side by side: each per-record cost removed from the hot path (issue 15).

Each pair runs the old way (written out here as it was) and the service's way now, over the
same inputs, alternately for ``--rounds`` rounds; the figures are CPU microseconds per
record or call (``time.process_time``), best and median. ``docs/bench/hot_path.py`` measures
the whole pipeline and publisher; this script shows where the difference comes from. Run from
the repository root::

    .venv/bin/python docs/bench/hot_path_parts.py [--count 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from aiokafka.partitioner import DefaultPartitioner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # devtools: not installed

from devtools.corpus import bench_records
from processor import tracing
from processor.config import KafkaConfig
from processor.decode import decode
from processor.documents import OutcomeData
from processor.inputs import Record
from processor.kafka.factory import producer_kwargs
from processor.metrics import Metrics
from processor.record_types import PydanticRecordType
from processor.upstream.cache import request_key
from processor.upstream.client import UpstreamRequest, UpstreamResponse
from schemas import RECORD_TYPES
from schemas.outcomes import InputCoordinates, OutcomeDocument, ProcessorInfo, Timing, Verdict

INFO = ProcessorInfo(name="record-processor", version="bench", instance="bench-0")


def _documents(count: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """Build and encode one valid customer's outcome document: the model, or plain data."""
    rtype = PydanticRecordType("customer.v1", RECORD_TYPES["customer.v1"])
    made = []
    for i, r in enumerate(bench_records(count)):
        record = Record("records.in", i % 8, i, 1_764_000_000_000, r.key, r.value, r.headers)
        decoded = decode(record, 1_048_576)
        data = rtype.validate(decoded.event.data).data
        event = {k: v for k, v in decoded.as_received.items() if k != "data"}
        made.append((record, r.key.decode(), decoded.event, event, data))
    now = datetime.now(UTC)

    def model() -> None:
        for record, key, e, event, data in made:
            OutcomeDocument(
                outcome="valid", verdict=Verdict.VALID, record_id=e.id, record_type=e.type,
                source=e.source, reasons=[], checks=[], event=event, normalized_data=data,
                unknown_fields=None,
                input=InputCoordinates(topic=record.topic, partition=record.partition,
                                       offset=record.offset, timestamp_ms=record.timestamp,
                                       key=key),
                processor=INFO,
                timing=Timing(received_at=now, completed_at=now, duration_ms=0.125),
            ).model_dump_json().encode()  # fmt: skip

    def plain() -> None:
        for record, key, e, event, data in made:
            OutcomeData.build(
                outcome="valid", verdict=Verdict.VALID, record_id=e.id, record_type=e.type,
                source=e.source, reasons=[], checks=[], event=event, normalized_data=data,
                unknown_fields=None, topic=record.topic, partition=record.partition,
                offset=record.offset, timestamp_ms=record.timestamp, key=key,
                processor=INFO, received_at=now, completed_at=now, duration_ms=0.125,
            ).json()  # fmt: skip

    return model, plain


def _partitioners(count: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """Pick a partition of 6 for each record's key (the bench's 1,000 keys)."""
    keys = [r.key for r in bench_records(count)]
    partitions = list(range(6))
    default = DefaultPartitioner()
    configured = producer_kwargs(KafkaConfig())["partitioner"]

    def old() -> None:
        for key in keys:
            default(key, partitions, partitions)

    def new() -> None:
        for key in keys:
            configured(key, partitions, partitions)

    return old, new


def _upstream_series(count: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """The metrics of one upstream call that missed the cache and answered 2xx."""
    metrics = Metrics()
    observer = metrics.upstream("email")

    def old() -> None:
        for _ in range(count):
            metrics.upstream_cache.labels("email", "miss").inc()
            metrics.upstream_calls.labels("email", "2xx").inc()
            metrics.upstream_latency.labels("email").observe(0.02)

    def new() -> None:
        for _ in range(count):
            observer.cache("miss")
            observer.call_ended("2xx", 0.02)

    return old, new


def _request_keys(count: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """The response cache's key of an e-mail check's request, and its answer's attempts."""
    requests = [
        UpstreamRequest("POST", "/v1/email/verify", {"email": f"billing.{i}@acme.de"}, f"k{i}")
        for i in range(count)
    ]
    answer = UpstreamResponse(200, {"deliverable": True}, 20.0)

    def old() -> None:
        for request in requests:
            body = json.dumps(request.json_body, sort_keys=True, separators=(",", ":"))
            _ = f"{request.method} {request.path}?{urlencode(request.query)} {body}"
            replace(answer, attempts=1)

    def new() -> None:
        for request in requests:
            request_key(request)
            _ = answer if answer.attempts == 1 else replace(answer, attempts=1)

    return old, new


@contextlib.contextmanager
def _old_span(topic: str) -> Iterator[None]:
    """The span functions as they were: a generator context manager, also when off."""
    if tracing._tracer is None:
        yield None
        return
    raise AssertionError("tracing is off here")


def _spans(count: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """One record's record and publish spans with tracing off."""
    record = Record("records.in", 0, 0, 0, b"k", b"{}")

    def old() -> None:
        for _ in range(count):
            with _old_span("in"), _old_span("valid"):
                pass

    def new() -> None:
        for _ in range(count):
            with tracing.record_span(record), tracing.publish_span("valid"):
                pass

    return old, new


def _measure(
    name: str, pair: tuple[Callable[[], None], Callable[[], None]], count: int, rounds: int
) -> None:
    figures: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(rounds):
        for label, run in zip(figures, pair, strict=True):
            started = time.process_time()
            run()
            figures[label].append((time.process_time() - started) / count * 1e6)
    before, after = (min(f) for f in figures.values())
    medians = " -> ".join(f"{statistics.median(f):.2f}" for f in figures.values())
    print(f"{name:26s} best {before:7.2f} -> {after:6.2f} us   (median {medians})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    pairs: dict[str, Callable[[int], tuple[Callable[[], None], Callable[[], None]]]] = {
        "outcome document": _documents,
        "partitioner": _partitioners,
        "upstream call's series": _upstream_series,
        "cache key + attempts": _request_keys,
        "spans, tracing off": _spans,
    }
    print(f"{args.count} records or calls, {args.rounds} rounds, CPU per record or call")
    for name, make in pairs.items():
        _measure(name, make(args.count), args.count, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
