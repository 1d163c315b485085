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
import hashlib
import time
from collections import Counter, deque
from typing import Any

import structlog

from processor import __version__
from processor.checks import Check
from processor.config import Settings
from processor.consumer import Intake
from processor.engine import Engine
from processor.http import HttpServer, build_api
from processor.kafka import (
    Consumer,
    Producer,
    broker_reachable,
    flush,
    lag_by_partition,
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


def config_hash(settings: Settings) -> str:
    """A short fingerprint of the effective config (secrets are masked before hashing)."""
    dumped = settings.model_dump_json(exclude={"instance_id"})
    return hashlib.sha256(dumped.encode()).hexdigest()[:12]


class App:
    """One processor instance: one consumer in the group."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._stop = asyncio.Event()
        self.outcomes: Counter[str] = Counter()
        self.watchdog: Watchdog | None = None
        self._engine: Engine | None = None
        self._broker_reachable = False
        self._lag: dict[tuple[str, int], int] = {}
        self._outcome_samples: deque[tuple[float, int]] = deque()
        self._outcome_metrics: dict[str, tuple[Any, Any]] = {}
        #: The port the operations endpoint listens on (known once it is bound).
        self.http_port: int | None = None

    @property
    def ready(self) -> bool:
        """Partitions assigned, broker reachable, not stalled (the /readyz answer)."""
        return self.readiness()["ready"]

    def request_stop(self) -> None:
        """Begin a graceful shutdown (signal handlers call this)."""
        self._stop.set()

    def _count(self, outcome: Outcome, took_s: float) -> None:
        if isinstance(outcome, DeadLetter):
            topic, code = "dead-letter", outcome.reason.value
        else:
            doc = outcome.document
            topic, code = doc.outcome, (doc.reasons[0].code.value if doc.reasons else "ok")
        name = f"{topic}:{code}"
        self.outcomes[name] += 1
        children = self._outcome_metrics.get(name)
        if children is None:  # labels() costs a lock and a dict lookup: once per series
            children = self._outcome_metrics[name] = (
                self.metrics.outcomes.labels(topic, code),
                self.metrics.pipeline_seconds.labels(topic),
            )
        children[0].inc()
        children[1].observe(took_s)

    # -- readiness and status (served by processor.http) ------------------------------
    def readiness(self) -> dict[str, bool]:
        assigned = self._engine is not None and bool(self._engine.assigned)
        not_stalled = self.watchdog is not None and not self.watchdog.stalled
        ready = assigned and self._broker_reachable and not_stalled
        return {"ready": ready, "partitions_assigned": assigned,
                "broker_reachable": self._broker_reachable, "not_stalled": not_stalled}  # fmt: skip

    def status(self) -> dict[str, Any]:
        engine = self._engine
        now, total = time.monotonic(), sum(self.outcomes.values())
        rate = 0.0
        if self._outcome_samples:
            then, before = self._outcome_samples[0]
            rate = (total - before) / max(now - then, 1e-9)
        breakers = {
            name: int(self.metrics.registry.get_sample_value(
                "processor_breaker_state", {"upstream": name}) or 0)
            for name in self.settings.upstreams
        }  # fmt: skip
        return {
            "instance": self.settings.instance_id,
            "version": __version__,
            **self.readiness(),
            "assigned": [f"{t}-{p}" for t, p in engine.assigned] if engine else [],
            "in_flight": engine.in_flight if engine else 0,
            "lag": {f"{t}-{p}": lag for (t, p), lag in self._lag.items()},
            "breakers": {n: ("closed", "half_open", "open")[v] for n, v in breakers.items()},
            "outcomes_total": dict(self.outcomes),
            "outcomes_per_s_last_minute": round(rate, 1),
        }

    async def _observe(self, consumer: Consumer, engine: Engine) -> None:
        """Every few seconds: can we reach the broker, how far behind are we; gauges."""
        http = self.settings.http
        while True:
            self._broker_reachable = await broker_reachable(consumer, http.broker_check_timeout_s)
            committed = {tp: (st.committed if (st := engine.offsets(tp)) else None)
                         for tp in engine.assigned}  # fmt: skip
            self._lag = await lag_by_partition(consumer, committed)
            for (topic, partition), lag in self._lag.items():
                self.metrics.consumer_lag.labels(topic, str(partition)).set(lag)
            stalled = self.watchdog is not None and self.watchdog.stalled
            self.metrics.stalled.set(int(stalled))
            self.metrics.ready.set(int(self.readiness()["ready"]))
            now = time.monotonic()
            self._outcome_samples.append((now, sum(self.outcomes.values())))
            while self._outcome_samples and self._outcome_samples[0][0] < now - 60:
                self._outcome_samples.popleft()
            await asyncio.sleep(http.broker_check_interval_s)

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
                rtype: [
                    Check(
                        c,
                        clients[c.upstream],
                        activity,
                        self.metrics.check_seconds.labels(c.name).observe,
                    )
                    for c in cfgs
                ]
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
                s.kafka,
                max_partition_fetch_bytes=max(1_048_576, s.engine.max_record_bytes * 4),
                drain_timeout_s=s.engine.drain_timeout_s,
            )
            engine = Engine(
                pipeline=pipeline,
                publisher=OutcomePublisher(
                    producer, s.kafka.topics, f"{s.name}/{s.instance_id}", s.outcomes
                ),
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
            self.metrics.build_info.labels(__version__, config_hash(s)).set(1)
            http = None
            if s.http.enabled:
                http = HttpServer(build_api(self, self.metrics.registry), s.http.host, s.http.port)
                await http.start()
                self.http_port = http.port
            intake.subscribe()
            log.info(
                "processor.started", version=__version__, instance=s.instance_id,
                group=s.kafka.group_id, input=s.kafka.topics.input,
                http=f"http://{s.http.host}:{self.http_port}" if http else None,
            )  # fmt: skip
            background = [
                asyncio.create_task(self.watchdog.run()),
                asyncio.create_task(self._observe(consumer, engine)),
            ]
            try:
                code = await self._run_until_stopped(intake, engine)
                await self._shutdown(intake, engine, producer, consumer)
            finally:
                for task in background:
                    task.cancel()
                if http is not None:
                    await http.stop()
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
