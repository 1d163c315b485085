"""The composition root: the only place that constructs clients and wires the service.

:class:`App` builds the HTTP session, upstream clients, checks, pipeline, producer,
consumer, engine and intake from :class:`~processor.config.Settings`, runs them, and shuts
them down in order on request:

1. stop intake (no new records are taken);
2. drain in-flight records, up to ``engine.drain_timeout_s``;
3. flush the producer (every queued outcome acknowledged or failed);
4. commit each partition's watermark;
5. leave the group, close the producer and the HTTP session;
6. log one summary line.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import structlog

from processor import __version__
from processor.checks import Check
from processor.config import Settings
from processor.consumer import Intake
from processor.engine import Engine
from processor.kafka import (
    Consumer,
    Producer,
    flush,
    make_consumer,
    make_producer,
    start_clients,
    stop_clients,
)
from processor.metrics import Metrics
from processor.outcomes import DeadLetter, Outcome, OutcomePublisher
from processor.pipeline import Pipeline
from processor.upstream import Session, UpstreamClient, make_session
from processor.upstream.breaker import CircuitBreaker
from processor.upstream.cache import ResponseCache
from processor.upstream.limiter import TokenBucket
from processor.upstream.resilient import ResilientCaller
from processor.waits import ActivityBoard, WaitBoard
from processor.watchdog import Watchdog
from schemas import RECORD_TYPES
from schemas.outcomes import ProcessorInfo

log = structlog.get_logger("processor.app")


class App:
    """One processor instance: one consumer in the group."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._stop = asyncio.Event()
        self.outcomes: Counter[str] = Counter()
        self.watchdog: Watchdog | None = None
        self._engine: Engine | None = None

    @property
    def ready(self) -> bool:
        """Partitions assigned and not stalled (the /readyz answer)."""
        return (
            self._engine is not None
            and bool(self._engine.assigned)
            and self.watchdog is not None
            and not self.watchdog.stalled
        )

    def request_stop(self) -> None:
        """Begin a graceful shutdown (signal handlers call this)."""
        self._stop.set()

    def _count(self, outcome: Outcome) -> None:
        if isinstance(outcome, DeadLetter):
            topic, code = "dead-letter", outcome.reason.value
        else:
            doc = outcome.document
            topic, code = doc.outcome, (doc.reasons[0].code.value if doc.reasons else "ok")
        self.outcomes[f"{topic}:{code}"] += 1
        self.metrics.outcomes.labels(topic, code).inc()

    def _callers(self, session: Session, board: WaitBoard) -> dict[str, ResilientCaller]:
        callers = {}
        for name, cfg in self.settings.upstreams.items():
            observer = self.metrics.upstream(name)
            callers[name] = ResilientCaller(
                UpstreamClient(name, cfg, session),
                retry=cfg.retry,
                max_concurrency=cfg.max_concurrency,
                breaker=CircuitBreaker(
                    name, cfg.breaker, board, on_change=observer.breaker_changed
                ),
                limiter=TokenBucket(cfg.rate_limit_rps, cfg.rate_limit_burst),
                cache=ResponseCache(cfg.cache.ttl_s, cfg.cache.max_entries),
                observer=observer,
            )
        return callers

    async def run(self) -> int:
        """Run until :meth:`request_stop` or a fatal error; return the exit code."""
        s = self.settings
        started = time.monotonic()
        structlog.contextvars.bind_contextvars(instance=s.instance_id)  # on every line we log
        info = ProcessorInfo(name=s.name, version=__version__, instance=s.instance_id)
        board = WaitBoard()
        activity = ActivityBoard()
        async with make_session() as session:
            clients = self._callers(session, board)
            checks = {
                rtype: [Check(c, clients[c.upstream], activity) for c in cfgs]
                for rtype, cfgs in s.checks.items()
            }
            pipeline = Pipeline(
                record_types=RECORD_TYPES,
                checks=checks,
                validation=s.validation,
                max_record_bytes=s.engine.max_record_bytes,
                processor=info,
            )
            producer = make_producer(s.kafka)
            consumer = make_consumer(
                s.kafka, max_partition_fetch_bytes=max(1_048_576, s.engine.max_record_bytes * 4)
            )
            engine = Engine(
                pipeline=pipeline,
                publisher=OutcomePublisher(producer, s.kafka.topics, f"{s.name}/{s.instance_id}"),
                ordering=s.engine.ordering,
                max_concurrency=s.engine.max_concurrency,
                max_in_flight=s.engine.max_in_flight,
                max_in_flight_per_partition=s.engine.max_in_flight_per_partition,
                on_outcome=self._count,
            )
            intake = Intake(
                consumer=consumer,
                engine=engine,
                topic=s.kafka.topics.input,
                fetch_max_records=s.engine.fetch_max_records,
                poll_timeout_ms=s.engine.poll_timeout_ms,
                commit_interval_s=s.engine.commit_interval_s,
                drain_timeout_s=s.engine.drain_timeout_s,
                board=board,
                metrics=self.metrics,
            )
            self._engine = engine
            self.watchdog = Watchdog(
                engine, activity, s.engine.stall_timeout_s, s.engine.max_rss_mib
            )
            await start_clients(producer, consumer)
            intake.subscribe()
            log.info(
                "processor.started", version=__version__, instance=s.instance_id,
                group=s.kafka.group_id, input=s.kafka.topics.input,
            )  # fmt: skip
            watching = asyncio.create_task(self.watchdog.run())
            try:
                code = await self._run_until_stopped(intake, engine)
                await self._shutdown(intake, engine, producer, consumer)
            finally:
                watching.cancel()
            log.info(
                "processor.stopped", exit_code=code, consumed=intake.consumed_total,
                finished=engine.finished_total, uptime_s=round(time.monotonic() - started, 2),
                peak_rss_mib=round(self.watchdog.peak_rss_mib),
                outcomes=dict(self.outcomes),
            )  # fmt: skip
            return code

    async def _run_until_stopped(self, intake: Intake, engine: Engine) -> int:
        intake_task = asyncio.create_task(intake.run())
        stop_task = asyncio.create_task(self._stop.wait())
        await asyncio.wait({intake_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        log.info("processor.stopping", reason="signal" if self._stop.is_set() else "intake ended")
        intake.stop()
        stop_task.cancel()
        try:
            await intake_task
        except Exception as exc:  # noqa: BLE001 - reported, then the shutdown goes on
            log.error("processor.intake_failed", error=repr(exc))
            return 1
        return 1 if engine.fatal is not None else 0

    async def _shutdown(
        self, intake: Intake, engine: Engine, producer: Producer, consumer: Consumer
    ) -> None:
        s = self.settings
        drained = await engine.drain(None, s.engine.drain_timeout_s)
        if not drained:
            log.warning("processor.drain_timeout", in_flight=engine.in_flight)
            await engine.cancel_all()
        if not await flush(producer, s.kafka.flush_timeout_s):
            log.warning("processor.flush_incomplete")
        await intake.commit()
        await stop_clients(producer, consumer)
