"""The composition root: the only place that constructs clients and wires the service.

:class:`App` builds the HTTP session, the pipeline over its upstream clients
(:func:`~processor.validation.build_validation`), Kafka clients, engine, intake, watchdog,
status, operations endpoint and, with ``api.enabled``, the validation API (on the same
pipeline and upstream callers) from
:class:`~processor.config.Settings`, and runs them. It keeps no state of its own: outcome
counts, readiness and ``/status`` live in :mod:`processor.status`, commit state in the
engine. Everything started is registered on one ``AsyncExitStack``, so whatever fails
part-way (the endpoint's port is taken after the Kafka clients started, say) still closes
what was opened, in reverse order. On request it shuts down in order:

1. stop intake (no new records are taken);
2. drain in-flight records, up to ``engine.drain_timeout_s``;
3. flush the producer (every queued outcome acknowledged or failed);
4. commit each partition's watermark;
5. stop the background tasks (cancelled and awaited) and the endpoint, leave the group,
   close the producer and the HTTP session;
6. log one summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import structlog

from processor import __version__, tracing
from processor.api.app import serving
from processor.config import Settings
from processor.endpoint import EndpointServer, build_api
from processor.engine import Engine
from processor.errors import ProcessorError
from processor.guard import DeadLetterGuard
from processor.intake import Intake
from processor.kafka import (
    STOP_TIMEOUT_S,
    KafkaClients,
    is_fenced,
    is_record_refusal,
    message_size_limits,
)
from processor.metrics import Metrics
from processor.outcomes import OutcomePublisher
from processor.status import OutcomeCounts, Status
from processor.transactions import TransactionalCommits
from processor.upstream import make_session
from processor.validation import build_validation
from processor.watchdog import Watchdog
from schemas.outcomes import ProcessorInfo

log = structlog.get_logger("processor.app")

#: How often a missing input topic is looked for (then picked up within this, not 5 minutes).
TOPIC_CHECK_INTERVAL_S = 1.0
#: How long the intake loop may take to return once stopped before it is cancelled.
INTAKE_STOP_TIMEOUT_S = 1.0
#: Leaving the group and closing the clients, at least this long even past the deadline.
CLIENT_STOP_FLOOR_S = 2.0


def config_hash(settings: Settings) -> str:
    """A short fingerprint of the effective config (secrets are masked before hashing)."""
    dumped = settings.model_dump_json(exclude={"instance_id"})
    return hashlib.sha256(dumped.encode()).hexdigest()[:12]


@contextlib.asynccontextmanager
async def _background(*jobs: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``jobs`` as tasks for the duration of the block; then cancel and await them."""
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("processor.background_failed", error=repr(result))


async def _limit_outcome_sizes(publisher: OutcomePublisher, s: Settings) -> None:
    """Tell the publisher each outcome topic's message size limit; warn about a topic whose
    limit is below the producer's batch size (the broker then refuses whole batches)."""
    topics = [s.kafka.topics.valid, s.kafka.topics.invalid, s.kafka.topics.dead_letter]
    try:
        limits = await message_size_limits(s.kafka, topics)
    except ProcessorError as exc:
        log.warning("kafka.topic_limits_unknown", error=str(exc))
        return
    # the producer refuses records over its own request size already: only smaller limits
    publisher.refuse_over(
        {t: n for t, n in limits.items() if n < s.kafka.producer_max_request_bytes}
    )
    for topic, limit in limits.items():
        if limit < s.kafka.producer_max_batch_bytes:
            log.warning(
                "kafka.topic_limit_below_batch_size", topic=topic, max_message_bytes=limit,
                producer_max_batch_bytes=s.kafka.producer_max_batch_bytes,
                fix="raise the topic's max.message.bytes or lower kafka.producer_max_batch_bytes",
            )  # fmt: skip


class App:
    """One processor instance: one consumer in the group."""

    def __init__(
        self, settings: Settings, metrics: Metrics | None = None, span_exporter: Any = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        #: Where spans go when ``tracing.enabled`` (None: OTLP/HTTP from ``OTEL_*``).
        self._span_exporter = span_exporter
        self._stop = asyncio.Event()
        self._shutdown_deadline = float("inf")
        #: Handles on what :meth:`run` built (for tests and tools; None until then).
        self.watchdog: Watchdog | None = None
        self.status: Status | None = None
        self.guard: DeadLetterGuard | None = None
        #: The port the operations endpoint listens on (known once it is bound).
        self.http_port: int | None = None
        #: The port the validation API listens on (``api.enabled``; known once it is bound).
        self.api_port: int | None = None

    @property
    def ready(self) -> bool:
        """Started, in the group, broker reachable (the /readyz answer)."""
        return self.status is not None and self.status.ready

    def resume_intake(self) -> None:
        """Let a tripped dead-letter guard take records again (SIGUSR2)."""
        if self.guard is not None:
            self.guard.resume("signal")

    def request_stop(self) -> None:
        """Begin a graceful shutdown (signal handlers call this)."""
        self._stop.set()

    async def run(self) -> int:
        """Run until :meth:`request_stop` or a fatal error; return the exit code.

        Raises:
            KafkaUnavailable: The broker could not be reached at start.
            EndpointError: The operations endpoint could not listen (port taken).
        """
        s = self.settings
        started = time.monotonic()
        structlog.contextvars.bind_contextvars(instance=s.instance_id)  # on every line we log
        info = ProcessorInfo(name=s.name, version=__version__, instance=s.instance_id)
        async with contextlib.AsyncExitStack() as stack:
            if s.tracing.enabled:
                tracing.install(s.name, s.instance_id, self._span_exporter)
                stack.push_async_callback(asyncio.to_thread, tracing.uninstall)
            session = await stack.enter_async_context(make_session())
            validation = build_validation(s, session, self.metrics, info)
            stack.push_async_callback(validation.aclose)  # after the engine, before the session
            pipeline, board, activity = validation.pipeline, validation.board, validation.activity
            kafka = KafkaClients(
                s.kafka,
                max_partition_fetch_bytes=max(1_048_576, s.engine.max_record_bytes * 4),
                drain_timeout_s=s.engine.drain_timeout_s,
                exactly_once=s.delivery == "exactly_once",
            )
            txn = kafka.transactions
            guard = self.guard = DeadLetterGuard(
                s.dead_letter_guard,
                on_change=lambda tripped: self.metrics.dead_letter_guard_tripped.set(int(tripped)),
            )
            counts = OutcomeCounts(self.metrics, guard)
            engine = Engine(
                pipeline=pipeline,
                publisher=(
                    publisher := OutcomePublisher(
                        kafka.producer,
                        s.kafka.topics,
                        f"{s.name}/{s.instance_id}",
                        s.outcomes,
                        route=txn.producer_for if txn is not None else None,
                        rejected=is_record_refusal,
                    )
                ),
                ordering=s.engine.ordering,
                max_concurrency=s.engine.max_concurrency,
                max_in_flight=s.engine.max_in_flight,
                max_in_flight_per_partition=s.engine.max_in_flight_per_partition,
                on_outcome=counts.record,
                is_fenced=is_fenced,
                paused_by_guard=lambda: guard.tripped,
            )
            intake = Intake(
                consumer=kafka.consumer,
                engine=engine,
                topic=s.kafka.topics.input,
                fetch_max_records=s.engine.fetch_max_records,
                poll_timeout_ms=s.engine.poll_timeout_ms,
                commit_interval_s=s.engine.commit_interval_s,
                drain_timeout_s=s.engine.drain_timeout_s,
                board=board,
                metrics=self.metrics,
                transactions=None if txn is None else TransactionalCommits(
                    engine=engine, transactions=txn, consumer=kafka.consumer,
                    settle_timeout_s=s.engine.drain_timeout_s, metrics=self.metrics,
                ),
            )  # fmt: skip
            watchdog = self.watchdog = Watchdog(
                engine, activity, s.engine.stall_timeout_s, s.engine.max_rss_mib
            )
            status = self.status = Status(
                instance_id=s.instance_id, upstreams=s.upstreams, config=s.endpoint,
                metrics=self.metrics, counts=counts, engine=engine, watchdog=watchdog,
                probe=kafka.consumer, guard=guard,
                broker_address=s.kafka.bootstrap_servers,
                intake=intake,
            )  # fmt: skip
            await kafka.start()
            stack.push_async_callback(self._stop_clients, kafka)
            await _limit_outcome_sizes(publisher, s)
            self.metrics.build_info.labels(__version__, config_hash(s)).set(1)
            if s.endpoint.enabled:
                server = EndpointServer(
                    build_api(status, self.metrics.registry), s.endpoint.host, s.endpoint.port
                )
                await server.start()
                stack.push_async_callback(server.stop)
                self.http_port = server.port
            if s.api.enabled:  # the same upstream callers as the stream: one budget for both
                self.api_port = await stack.enter_async_context(
                    serving(s, validation, self.metrics)
                )
            intake.subscribe()
            log.info(
                "processor.started", version=__version__, instance=s.instance_id,
                group=s.kafka.group_id, input=s.kafka.topics.input, delivery=s.delivery,
                http=f"http://{s.endpoint.host}:{self.http_port}" if self.http_port else None,
                record_types={t: s.types[t].source for t in s.types.names()},
                checks={t: [c.name for c in s.checks.get(t, [])] for t in s.types.names()},
            )  # fmt: skip
            jobs = [watchdog.run(), status.run()]
            if await self._input_topic_missing(kafka):
                jobs.append(self._pick_up_input_topic(kafka))
            await stack.enter_async_context(_background(*jobs))
            code = await self._run_until_stopped(intake, engine)
            await self._shutdown(intake, engine, kafka)
        log.info(
            "processor.stopped", exit_code=code, consumed=intake.consumed_total,
            finished=engine.finished_total, uptime_s=round(time.monotonic() - started, 2),
            peak_rss_mib=round(watchdog.peak_rss_mib), outcomes=dict(counts.totals),
        )  # fmt: skip
        return code

    async def _input_topic_missing(self, kafka: KafkaClients) -> bool:
        """True (and a warning) when the broker does not know the input topic yet."""
        s = self.settings
        exists = await kafka.consumer.has_topic(
            s.kafka.topics.input, s.endpoint.broker_check_timeout_s
        )
        if exists is False:
            log.warning(
                "kafka.input_topic_missing", topic=s.kafka.topics.input,
                address=s.kafka.bootstrap_servers, checking_every_s=TOPIC_CHECK_INTERVAL_S,
            )  # fmt: skip
        return exists is False

    async def _pick_up_input_topic(self, kafka: KafkaClients) -> None:
        s = self.settings
        waited = time.monotonic()
        await kafka.consumer.wait_for_topic(
            s.kafka.topics.input, TOPIC_CHECK_INTERVAL_S, s.endpoint.broker_check_timeout_s
        )
        log.info("kafka.input_topic_found", topic=s.kafka.topics.input,
                 waited_s=round(time.monotonic() - waited, 1))  # fmt: skip

    async def _run_until_stopped(self, intake: Intake, engine: Engine) -> int:
        intake_task = asyncio.create_task(intake.run())
        stop_task = asyncio.create_task(self._stop.wait())
        await asyncio.wait({intake_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        log.info("processor.stopping", reason="signal" if self._stop.is_set() else "intake ended")
        self._shutdown_deadline = time.monotonic() + self.settings.engine.drain_timeout_s
        intake.stop()
        stop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stop_task
        # The loop returns after its current poll; a commit under way while the broker is
        # down would hold it up to kafka.request_timeout_ms: the final commit redoes it.
        await asyncio.wait({intake_task}, timeout=INTAKE_STOP_TIMEOUT_S)
        if not intake_task.done():
            intake_task.cancel()
            await asyncio.wait({intake_task})
        if not intake_task.cancelled() and (exc := intake_task.exception()) is not None:
            log.error("processor.intake_failed", error=repr(exc))  # the shutdown goes on
            return 1
        return 1 if engine.fatal is not None else 0

    def _left_s(self, floor_s: float) -> float:
        """Seconds left before the shutdown deadline, but at least ``floor_s``."""
        return max(floor_s, self._shutdown_deadline - time.monotonic())

    async def _shutdown(self, intake: Intake, engine: Engine, kafka: KafkaClients) -> None:
        """Drain, flush and commit, all within ``engine.drain_timeout_s`` of the stop (each
        later step gets a floor of a second or two); closing the clients is left to the exit
        stack. What could not be committed is logged: the next owner redoes it."""
        s = self.settings
        drained = await engine.drain(None, self._left_s(0))
        if not drained:
            log.warning("processor.drain_timeout", in_flight=engine.in_flight)
            await engine.cancel_all()
        if not await kafka.flush(min(s.kafka.flush_timeout_s, self._left_s(1.0))):
            log.warning("processor.flush_incomplete")
        try:
            committed = await asyncio.wait_for(intake.commit(), self._left_s(1.0))
        except TimeoutError:
            committed = False
        if not committed:
            uncommitted = engine.committable()
            log.warning(
                "processor.commit_incomplete",
                uncommitted={f"{t}-{p}": offset for (t, p), offset in sorted(uncommitted.items())},
                in_flight=engine.in_flight,
            )  # fmt: skip

    async def _stop_clients(self, kafka: KafkaClients) -> None:
        await kafka.stop(min(STOP_TIMEOUT_S, self._left_s(CLIENT_STOP_FLOOR_S)))
