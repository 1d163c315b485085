"""The rule set both front doors share: each upstream's resilience stack, the checks, the pipeline.

:func:`build_validation` is the one place that turns :class:`~processor.config.Settings` into
a :class:`~processor.pipeline.Pipeline`: per upstream one :class:`ResilientCaller` (its rate
limit, concurrency bound, circuit breaker, response cache and call coalescing), the checks of
each record type bound to those callers, and the pipeline over them. The stream processor
(:mod:`processor.app`) and the validation API (:mod:`processor.api`) both call it, so a record
gets the same verdict whichever way it arrives; in one process they call it *once* and share
the result, so together they never exceed an upstream's limit (each process has its own
share: the limits are per process).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from processor.checkplan import CheckConfig
from processor.checks import Check
from processor.config import Settings
from processor.metrics import Metrics
from processor.pipeline import Pipeline
from processor.upstream import Caller, Session, UpstreamClient
from processor.upstream.batcher import Batcher
from processor.upstream.breaker import BreakerState, CircuitBreaker
from processor.upstream.cache import ResponseCache
from processor.upstream.limiter import TokenBucket
from processor.upstream.resilient import ResilientCaller
from processor.waits import ActivityBoard, WaitBoard
from schemas.outcomes import ProcessorInfo


@dataclass(frozen=True)
class Validation:
    """The pipeline and what the front doors read beside it."""

    pipeline: Pipeline
    #: Each upstream's breaker, by upstream name (the API refuses at once while one is open).
    breakers: Mapping[str, CircuitBreaker]
    #: Record type -> the upstreams its checks call.
    upstreams_of: Mapping[str, frozenset[str]]
    board: WaitBoard = field(default_factory=WaitBoard)
    activity: ActivityBoard = field(default_factory=ActivityBoard)
    #: The batched checks' batchers (closed with :meth:`aclose`).
    batchers: tuple[Batcher, ...] = ()

    async def aclose(self) -> None:
        """Stop the batchers: an open batch's timer and any batch still being sent."""
        for batcher in self.batchers:
            await batcher.aclose()

    def open_upstreams(self, record_type: str) -> list[str]:
        """The upstreams ``record_type``'s checks call whose breaker is open now."""
        return sorted(
            name
            for name in self.upstreams_of.get(record_type, ())
            if self.breakers[name].state is BreakerState.OPEN
        )


def build_validation(
    settings: Settings, session: Session, metrics: Metrics, processor: ProcessorInfo
) -> Validation:
    """The pipeline of ``settings`` over one set of upstream callers on ``session``."""
    board, activity = WaitBoard(), ActivityBoard()
    breakers: dict[str, CircuitBreaker] = {}
    callers: dict[str, ResilientCaller] = {}
    for name, cfg in settings.upstreams.items():
        observer = metrics.upstream(name)
        breaker = breakers[name] = CircuitBreaker(
            name, cfg.breaker, board, on_change=observer.breaker_changed
        )
        callers[name] = ResilientCaller(
            UpstreamClient(name, cfg, session),
            retry=cfg.retry,
            max_concurrency=cfg.max_concurrency,
            breaker=breaker,
            limiter=TokenBucket(cfg.rate_limit_rps, cfg.rate_limit_burst),
            cache=ResponseCache(cfg.cache.ttl_s, cfg.cache.max_entries),
            observer=observer,
        )

    batchers: list[Batcher] = []

    def caller(check: CheckConfig) -> Caller:
        if check.batch is None:
            return callers[check.upstream]
        observe = metrics.upstream_batch_items.labels(check.upstream).observe
        batchers.append(Batcher(callers[check.upstream], check.batch, observe))
        return batchers[-1]

    checks = {
        rtype: [
            Check(c, caller(c), activity, metrics.check_seconds.labels(c.name).observe)
            for c in cfgs
        ]
        for rtype, cfgs in settings.checks.items()
    }
    pipeline = Pipeline(
        record_types=settings.types,
        checks=checks,
        validation=settings.validation,
        max_record_bytes=settings.engine.max_record_bytes,
        processor=processor,
    )
    upstreams_of = {
        rtype: frozenset(c.upstream for c in cfgs) for rtype, cfgs in settings.checks.items()
    }
    return Validation(pipeline, breakers, upstreams_of, board, activity, tuple(batchers))
