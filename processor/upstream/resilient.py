"""The resilience policy around one upstream's transport: cache, coalescing, breaker,
concurrency bound, rate limit, retries. It is a :class:`~processor.upstream.client.Caller`.

Per call: a cached answer is returned at once; an identical call already in flight is
joined; otherwise, per attempt: wait for the breaker to admit (an open breaker makes the
record wait, its partition paused), take one of ``max_concurrency`` slots, then a
rate-limit token (in that order, so a ``Retry-After`` received by one call holds every
call made after it), then call. Transient failures
(``retriable``: timeouts, connection errors, 5xx, 429) are retried with exponential
backoff and full jitter, a 429's ``Retry-After`` holding every caller of the upstream. The
record gives up (its check raises, and it is dead-lettered) only when ``max_attempts`` or
the time ``budget_s`` is spent while the upstream was answering: waiting for an open
breaker and for rate-limit tokens does not count, nor do failed half-open probes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import replace
from typing import Protocol

import structlog

from processor.config import RetryConfig
from processor.errors import UpstreamError, UpstreamRateLimited
from processor.slots import Slots
from processor.upstream.breaker import BreakerState, CircuitBreaker
from processor.upstream.cache import ResponseCache, request_key
from processor.upstream.client import Caller, UpstreamRequest, UpstreamResponse
from processor.upstream.limiter import TokenBucket

log = structlog.get_logger("processor.upstream")

#: What answers a request that missed the cache and joined no call in flight.
Fetch = Callable[[UpstreamRequest], Awaitable[UpstreamResponse]]


class UpstreamObserver(Protocol):
    """Where the resilience layer reports what it did (metrics implement it)."""

    def call_ended(self, status_class: str, latency_s: float) -> None: ...
    def retry_scheduled(self, reason: str) -> None: ...
    def cache(self, result: str) -> None: ...
    def limiter_waited(self, seconds: float) -> None: ...
    def breaker_changed(self, state: BreakerState) -> None: ...


def mark_retrieved(future: asyncio.Future[UpstreamResponse]) -> None:
    """Mark a shared call's exception as observed: no joiner may be waiting on it."""
    if not future.cancelled():
        future.exception()


def status_class(exc: UpstreamError | None) -> str:
    """A low-cardinality label for how a call ended."""
    if exc is None:
        return "2xx"
    if isinstance(exc, UpstreamRateLimited):
        return "429"
    if exc.status is not None:
        return f"{exc.status // 100}xx"
    return exc.reason.value.removeprefix("upstream.")


class ResilientCaller:
    """Cache → coalesce → (breaker → limiter → transport, retried) for one upstream."""

    def __init__(
        self,
        transport: Caller,
        *,
        retry: RetryConfig,
        max_concurrency: int,
        breaker: CircuitBreaker,
        limiter: TokenBucket,
        cache: ResponseCache,
        observer: UpstreamObserver,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = transport.name
        self._transport = transport
        self._retry = retry
        self._slots = Slots(max_concurrency)
        self._breaker = breaker
        self._limiter = limiter
        self._cache = cache
        self._observer = observer
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self._in_flight: dict[str, asyncio.Future[UpstreamResponse]] = {}

    async def call(self, request: UpstreamRequest, fetch: Fetch | None = None) -> UpstreamResponse:
        """The answer to ``request``: cached, joined, or fetched (``fetch``: the batcher's
        instead of single calls with retries)."""
        key = request_key(request)
        cached = self._cache.get(key)
        if cached is not None:
            self._observer.cache("hit")
            return replace(cached, attempts=0)
        shared = self._in_flight.get(key)
        if shared is not None:
            self._observer.cache("coalesced")
            try:
                return replace(await asyncio.shield(shared), attempts=0)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not shared.cancelled() or (task is not None and task.cancelling()):
                    raise
                # the call we joined was cancelled (its record's partition was revoked):
                # make our own
        self._observer.cache("miss")
        future: asyncio.Future[UpstreamResponse] = asyncio.get_running_loop().create_future()
        future.add_done_callback(mark_retrieved)
        self._in_flight[key] = future
        try:
            response = await (fetch or self._with_retries)(request)
        except UpstreamError as exc:
            future.set_exception(exc)
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            if self._in_flight.get(key) is future:
                del self._in_flight[key]
        self._cache.put(key, response)
        future.set_result(response)
        return response

    def _backoff_s(self, attempt: int) -> float:
        cap = min(self._retry.backoff_max_s, self._retry.backoff_initial_s * 2 ** (attempt - 1))
        return self._rng.uniform(0, cap)

    async def admit(self, partitions: Iterable[Hashable | None] = ()) -> bool:
        """Wait for the breaker to let a request out, ``partitions`` (a batch's records')
        blocked meanwhile; True if it is a half-open probe."""
        return await self._breaker.admit(partitions)

    async def attempt(
        self, request: UpstreamRequest
    ) -> tuple[UpstreamResponse | UpstreamError, float]:
        """One call: a concurrency slot first, then a rate-limit token (so a Retry-After
        hold set by the previous call in the slot is honoured), then the transport."""
        async with self._slots:
            waited = await self._limiter.acquire()
            if waited:
                self._observer.limiter_waited(waited)
            started = self._clock()
            try:
                response: UpstreamResponse | UpstreamError = await self._transport.call(request)
            except UpstreamError as exc:
                response = exc
                if isinstance(exc, UpstreamRateLimited) and exc.retry_after_s:
                    self._limiter.hold_until(self._clock() + exc.retry_after_s)
            took = self._clock() - started
        return response, took

    def settle(self, probe: bool, answer: UpstreamResponse | UpstreamError, took: float) -> bool:
        """Report how an attempt ended to the metrics and the breaker; True if it counts
        against the caller's attempts and budget (a failed probe is the outage's)."""
        if isinstance(answer, UpstreamResponse):
            self._observer.call_ended("2xx", took)
            self._breaker.record(probe, False)
            return True
        self._observer.call_ended(status_class(answer), took)
        outage = answer.retriable and not isinstance(answer, UpstreamRateLimited)
        self._breaker.record(probe, True if outage else None)
        return not (probe and outage)

    async def backoff(self, exc: UpstreamError, attempts: int, spent_s: float) -> float | None:
        """Sleep before the next attempt and return the seconds slept, or None (no sleep):
        ``exc`` is final (not retriable, attempts or budget spent)."""
        if not exc.retriable or attempts >= self._retry.max_attempts:
            return None
        delay = self._backoff_s(attempts)
        if isinstance(exc, UpstreamRateLimited) and exc.retry_after_s:
            delay = max(delay, exc.retry_after_s)
        if spent_s + delay > self._retry.budget_s:
            return None
        self._observer.retry_scheduled(status_class(exc))
        log.info("upstream.retry_scheduled", upstream=self.name, attempt=attempts,
                 delay_s=round(delay, 3), error=exc.reason.value)  # fmt: skip
        await self._sleep(delay)
        return delay

    async def _with_retries(self, request: UpstreamRequest) -> UpstreamResponse:
        attempts = 0
        spent_s = 0.0
        while True:
            probe = await self._breaker.admit()
            answer, took = await self.attempt(request)
            counts = self.settle(probe, answer, took)
            if isinstance(answer, UpstreamResponse):
                if answer.attempts == attempts + 1:  # the first attempt: as it is (replace: 3.5 µs)
                    return answer
                return replace(answer, attempts=attempts + 1)
            exc = answer
            if counts:
                attempts += 1
                spent_s += took
            exc.attempts = attempts
            slept = await self.backoff(exc, attempts, spent_s)
            if slept is None:
                raise exc
            spent_s += slept
