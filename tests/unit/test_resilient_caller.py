"""Tests of the resilience policy: retries, backoff, budget, Retry-After, coalescing, breaker."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from processor.config import BreakerConfig, RetryConfig
from processor.errors import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from processor.upstream.breaker import BreakerState, CircuitBreaker
from processor.upstream.cache import ResponseCache
from processor.upstream.client import UpstreamRequest, UpstreamResponse
from processor.upstream.limiter import TokenBucket
from processor.upstream.resilient import ResilientCaller
from processor.waits import CURRENT_PARTITION, WaitBoard
from tests.unit.fake_time import FakeTime, eventually

BOUND_S = 5.0
#: A real open period, for the tests that go through the breaker's timed transition.
SHORT_OPEN_S = 0.02
#: Long enough to show that a call is still waiting, short enough to keep the suite fast.
STILL_WAITING_S = 0.05
UPSTREAM = "email"
ANSWER = UpstreamResponse(status=200, body={"deliverable": True}, latency_ms=1.0)
RETRY = RetryConfig(max_attempts=5, budget_s=60.0, backoff_initial_s=0.1, backoff_max_s=1.0)
#: A breaker that never trips unless a test says otherwise.
QUIET_BREAKER = BreakerConfig(consecutive_failures=1_000, min_calls=1_000)
CLOSED, HALF_OPEN, OPEN = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN

Answer = UpstreamResponse | UpstreamError
Scripted = Answer | Callable[[UpstreamRequest], Answer]
ErrorFactory = Callable[[], UpstreamError]


def timeout() -> UpstreamError:
    return UpstreamTimeout("no answer in time", upstream=UPSTREAM)


def server_error() -> UpstreamError:
    return UpstreamUnavailable("HTTP 503", upstream=UPSTREAM, status=503)


def refused() -> UpstreamError:
    return UpstreamUnavailable("connection refused", upstream=UPSTREAM)


def rate_limited(retry_after_s: float | None = None) -> UpstreamError:
    return UpstreamRateLimited("HTTP 429", upstream=UPSTREAM, retry_after_s=retry_after_s)


def bad_response() -> UpstreamError:
    return UpstreamBadResponse("not JSON", upstream=UPSTREAM, status=200)


TRANSIENT: list[ErrorFactory] = [timeout, server_error, refused, rate_limited]
TRANSIENT_IDS = ["timeout", "5xx", "refused", "429"]


class ScriptedTransport:
    """A transport that answers from a script (an answer, or a function of the request
    giving one), optionally held at a gate, taking fake time."""

    name = UPSTREAM

    def __init__(
        self,
        script: Sequence[Scripted],
        time: FakeTime,
        latency_s: float = 0.0,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.script = list(script)
        self.requests: list[UpstreamRequest] = []
        self._time = time
        self._latency_s = latency_s
        self._gate = gate

    async def call(self, request: UpstreamRequest) -> UpstreamResponse:
        self.requests.append(request)
        if self._gate is not None:
            await self._gate.wait()
        self._time.advance(self._latency_s)
        answer = self.script.pop(0)
        if callable(answer):
            answer = answer(request)
        if isinstance(answer, UpstreamError):
            raise answer
        return answer


class RecordingObserver:
    """An UpstreamObserver that keeps every report in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def call_ended(self, status_class: str, latency_s: float) -> None:
        self.events.append(("call_ended", (status_class, latency_s)))

    def retry_scheduled(self, reason: str) -> None:
        self.events.append(("retry_scheduled", reason))

    def cache(self, result: str) -> None:
        self.events.append(("cache", result))

    def limiter_waited(self, seconds: float) -> None:
        self.events.append(("limiter_waited", seconds))

    def breaker_changed(self, state: BreakerState) -> None:
        self.events.append(("breaker_changed", state))

    def of(self, kind: str) -> list[Any]:
        return [value for name, value in self.events if name == kind]


class Rig:
    """A ResilientCaller over a scripted transport with real breaker, limiter and cache."""

    def __init__(
        self,
        script: Sequence[Scripted],
        *,
        retry: RetryConfig = RETRY,
        breaker: BreakerConfig = QUIET_BREAKER,
        real_breaker_clock: bool = False,
        limiter: Callable[[FakeTime], TokenBucket] | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        latency_s: float = 0.0,
        gate: asyncio.Event | None = None,
        max_concurrency: int = 16,
    ) -> None:
        self.time = FakeTime()
        self.transport = ScriptedTransport(script, self.time, latency_s, gate)
        self.observer = RecordingObserver()
        self.board = WaitBoard()
        #: Each breaker transition with the partitions blocked at that moment.
        self.transitions: list[tuple[BreakerState, set[Hashable]]] = []
        self.breaker = CircuitBreaker(
            UPSTREAM,
            breaker,
            self.board,
            clock=time.monotonic if real_breaker_clock else self.time.clock,
            on_change=self._breaker_changed,
        )
        self.limiter = (limiter or (lambda _t: TokenBucket(None)))(self.time)
        self.caller = ResilientCaller(
            self.transport,
            retry=retry,
            max_concurrency=max_concurrency,
            breaker=self.breaker,
            limiter=self.limiter,
            cache=ResponseCache(ttl_s=60.0, max_entries=100, clock=self.time.clock),
            observer=self.observer,
            rng=rng or random.Random(0),
            clock=self.time.clock,
            sleep=sleep or self.time.sleep,
        )

    def _breaker_changed(self, state: BreakerState) -> None:
        self.observer.breaker_changed(state)
        self.transitions.append((state, self.board.blocked()))

    async def call(self, request: UpstreamRequest | None = None) -> UpstreamResponse:
        return await asyncio.wait_for(self.caller.call(request or _request()), BOUND_S)

    async def fails(self, request: UpstreamRequest | None = None) -> UpstreamError:
        with pytest.raises(UpstreamError) as caught:
            await self.call(request)
        return caught.value


def _request(email: str = "alice@example.com", record: str = "rec-1") -> UpstreamRequest:
    return UpstreamRequest(
        method="POST",
        path="/v1/email/verify",
        json_body={"email": email},
        idempotency_key=f"{record}:email_deliverable",
    )


@pytest.mark.parametrize("error", TRANSIENT, ids=TRANSIENT_IDS)
async def test_transient_errors_are_retried_until_success(error: ErrorFactory) -> None:
    """Timeouts, connection errors, 5xx and 429 are tried again; ``attempts`` counts every try."""
    rig = Rig([error(), error(), ANSWER])

    response = await rig.call()

    assert response.body == ANSWER.body
    assert response.attempts == 3
    assert len(rig.transport.requests) == 3
    assert len(rig.time.sleeps) == 2


@pytest.mark.parametrize(
    ("before", "attempts"), [([], 1), ([server_error()], 2)], ids=["first", "after-a-retry"]
)
async def test_bad_response_is_never_retried(before: list[Answer], attempts: int) -> None:
    """An ``UpstreamBadResponse`` ends the call at once, with the attempts made so far."""
    bad = bad_response()
    rig = Rig([*before, bad, ANSWER])

    error = await rig.fails()

    assert error is bad
    assert error.attempts == attempts
    assert len(rig.transport.requests) == attempts
    assert len(rig.observer.of("retry_scheduled")) == attempts - 1


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
async def test_gives_up_after_max_attempts_raising_the_last_error(max_attempts: int) -> None:
    """After ``max_attempts`` transient failures the last error is raised with ``.attempts``."""
    errors = [timeout() if n % 2 else server_error() for n in range(max_attempts)]
    retry = RETRY.model_copy(update={"max_attempts": max_attempts})
    rig = Rig([*errors, ANSWER], retry=retry)

    error = await rig.fails()

    assert error is errors[-1]
    assert error.attempts == max_attempts
    assert len(rig.transport.requests) == max_attempts
    assert len(rig.time.sleeps) == max_attempts - 1


@pytest.mark.parametrize(
    ("script", "latency_s", "budget_s", "attempts"),
    [
        ([server_error(), server_error(), server_error(), ANSWER], 0.5, 1.0, 2),
        ([rate_limited(retry_after_s=5.0), ANSWER], 0.0, 2.0, 1),
    ],
    ids=["slow-calls", "long-retry-after"],
)
async def test_gives_up_when_the_budget_would_be_exceeded(
    script: list[Answer], latency_s: float, budget_s: float, attempts: int
) -> None:
    """A retry whose backoff would pass ``budget_s`` (calls plus backoff) is not made."""
    retry = RetryConfig(
        max_attempts=10, budget_s=budget_s, backoff_initial_s=0.01, backoff_max_s=0.01
    )
    rig = Rig(script, retry=retry, latency_s=latency_s)

    error = await rig.fails()

    assert error.attempts == attempts
    assert len(rig.transport.requests) == attempts
    assert len(rig.time.sleeps) == attempts - 1


def _caps(initial_s: float, max_s: float, retries: int) -> list[float]:
    return [min(max_s, initial_s * 2 ** (n - 1)) for n in range(1, retries + 1)]


@pytest.mark.parametrize("seed", range(5))
async def test_backoff_is_full_jitter_under_the_exponential_cap(seed: int) -> None:
    """The n-th backoff lies in [0, min(backoff_max_s, backoff_initial_s * 2**(n-1))]."""
    retry = RetryConfig(max_attempts=8, budget_s=60.0, backoff_initial_s=0.1, backoff_max_s=1.0)
    rig = Rig([server_error() for _ in range(7)] + [ANSWER], retry=retry, rng=random.Random(seed))

    await rig.call()

    caps = _caps(0.1, 1.0, 7)
    assert len(rig.time.sleeps) == 7
    assert all(0.0 <= delay <= cap for delay, cap in zip(rig.time.sleeps, caps, strict=True))


class _Extreme(random.Random):
    """A random source that always picks one end of the range."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self._top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self._top else a


@pytest.mark.parametrize(
    ("top", "expected"), [(True, _caps(0.1, 1.0, 7)), (False, [0.0] * 7)], ids=["top", "bottom"]
)
async def test_backoff_range_doubles_per_attempt_up_to_the_max(
    top: bool, expected: list[float]
) -> None:
    """The jitter range starts at zero and its top doubles each attempt until backoff_max_s."""
    retry = RetryConfig(max_attempts=8, budget_s=60.0, backoff_initial_s=0.1, backoff_max_s=1.0)
    rig = Rig([server_error() for _ in range(7)] + [ANSWER], retry=retry, rng=_Extreme(top))

    await rig.call()

    assert rig.time.sleeps == pytest.approx(expected)


async def test_retry_after_delays_the_retry_and_holds_every_caller() -> None:
    """A 429 with Retry-After 2 s waits at least 2 s and holds the limiter for other callers."""
    own_sleeps: list[float] = []
    others_waited: list[float] = []

    async def backoff(seconds: float) -> None:
        own_sleeps.append(seconds)
        others_waited.append(await rig.limiter.acquire())  # another record, mid-backoff
        await rig.time.sleep(seconds)

    rig = Rig(
        [rate_limited(retry_after_s=2.0), ANSWER],
        limiter=lambda fake: TokenBucket(None, clock=fake.clock, sleep=fake.sleep),
        sleep=backoff,
    )

    response = await rig.call()

    assert response.attempts == 2
    assert own_sleeps[0] >= 2.0
    assert others_waited == [pytest.approx(2.0)]
    assert rig.observer.of("limiter_waited") == []  # our own retry slept through the hold


async def test_no_more_than_max_concurrency_calls_are_in_flight() -> None:
    """With ``max_concurrency=2`` a third distinct call waits until a slot is free."""
    gate = asyncio.Event()
    rig = Rig([ANSWER] * 5, gate=gate, max_concurrency=2)

    calls = [asyncio.create_task(rig.call(_request(f"user{n}@example.com"))) for n in range(5)]
    await eventually(lambda: len(rig.transport.requests) == 2)
    done, _ = await asyncio.wait(calls, timeout=STILL_WAITING_S)
    assert (done, len(rig.transport.requests)) == (set(), 2)
    gate.set()
    await asyncio.wait_for(asyncio.gather(*calls), BOUND_S)

    assert len(rig.transport.requests) == 5


async def test_a_retry_after_holds_the_call_queued_behind_it_for_a_slot() -> None:
    """A call waiting for the slot of a call that got a 429 waits out its Retry-After too."""
    gate = asyncio.Event()
    rig = Rig(
        [rate_limited(retry_after_s=2.0), ANSWER, ANSWER],
        gate=gate,
        max_concurrency=1,
        limiter=lambda fake: TokenBucket(None, clock=fake.clock, sleep=fake.sleep),
    )

    first = asyncio.create_task(rig.call(_request("alice@example.com")))
    await eventually(lambda: len(rig.transport.requests) == 1)
    second = asyncio.create_task(rig.call(_request("bob@example.com")))
    await eventually(lambda: rig.observer.of("cache") == ["miss", "miss"])
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), BOUND_S)

    assert rig.observer.of("limiter_waited") == [pytest.approx(2.0)]


async def test_limiter_wait_is_reported_to_the_observer() -> None:
    """Time spent waiting for a rate-limit token is reported as ``limiter_waited``."""
    rig = Rig(
        [ANSWER, ANSWER],
        limiter=lambda fake: TokenBucket(1.0, 1, clock=fake.clock, sleep=fake.sleep),
    )

    await rig.call(_request("alice@example.com"))
    await rig.call(_request("bob@example.com"))

    assert rig.observer.of("limiter_waited") == [pytest.approx(1.0)]


async def test_observer_sees_every_call_and_retry() -> None:
    """Each attempt reports its status class and latency; each retry its reason."""
    rig = Rig([server_error(), timeout(), refused(), rate_limited(), ANSWER], latency_s=0.25)

    await rig.call()

    assert [event for event in rig.observer.events if event[0] != "cache"] == [
        ("call_ended", ("5xx", 0.25)),
        ("retry_scheduled", "5xx"),
        ("call_ended", ("timeout", 0.25)),
        ("retry_scheduled", "timeout"),
        ("call_ended", ("unavailable", 0.25)),
        ("retry_scheduled", "unavailable"),
        ("call_ended", ("429", 0.25)),
        ("retry_scheduled", "429"),
        ("call_ended", ("2xx", 0.25)),
    ]


async def test_identical_concurrent_calls_are_coalesced() -> None:
    """A call identical to one in flight joins it: one transport call, both get the answer."""
    gate = asyncio.Event()
    rig = Rig([ANSWER], gate=gate)

    owner = asyncio.create_task(rig.call(_request(record="rec-1")))
    await eventually(lambda: len(rig.transport.requests) == 1)
    joiner = asyncio.create_task(rig.call(_request(record="rec-2")))
    await eventually(lambda: rig.observer.of("cache") == ["miss", "coalesced"])
    gate.set()
    owned, joined = await asyncio.wait_for(asyncio.gather(owner, joiner), BOUND_S)

    assert owned.body == joined.body == ANSWER.body
    assert (owned.attempts, joined.attempts) == (1, 0)
    assert len(rig.transport.requests) == 1


async def test_joiner_gets_the_error_of_the_call_it_joined() -> None:
    """When the call in flight fails, the call that joined it fails with the same error."""
    gate = asyncio.Event()
    bad = bad_response()
    rig = Rig([bad], gate=gate)

    owner = asyncio.create_task(rig.call(_request(record="rec-1")))
    await eventually(lambda: len(rig.transport.requests) == 1)
    joiner = asyncio.create_task(rig.call(_request(record="rec-2")))
    await eventually(lambda: rig.observer.of("cache") == ["miss", "coalesced"])
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(owner, joiner, return_exceptions=True), BOUND_S)

    assert [result is bad for result in results] == [True, True]
    assert len(rig.transport.requests) == 1


async def test_joiner_of_a_cancelled_call_makes_its_own() -> None:
    """If the call it joined is cancelled (partition revoked), the joiner calls for itself."""
    gate = asyncio.Event()
    rig = Rig([ANSWER], gate=gate)

    owner = asyncio.create_task(rig.call(_request(record="rec-1")))
    await eventually(lambda: len(rig.transport.requests) == 1)
    joiner = asyncio.create_task(rig.call(_request(record="rec-2")))
    await eventually(lambda: rig.observer.of("cache") == ["miss", "coalesced"])
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(owner, BOUND_S)
    await eventually(lambda: len(rig.transport.requests) == 2)
    gate.set()
    joined = await asyncio.wait_for(joiner, BOUND_S)

    assert joined.body == ANSWER.body
    assert joined.attempts == 1
    assert rig.observer.of("cache") == ["miss", "coalesced", "miss"]


async def test_a_repeated_call_after_success_is_a_cache_hit() -> None:
    """The same question asked again is answered from the cache with ``attempts`` 0."""
    rig = Rig([ANSWER])

    first = await rig.call(_request(record="rec-1"))
    second = await rig.call(_request(record="rec-2"))

    assert (first.attempts, second.attempts) == (1, 0)
    assert second.body == ANSWER.body
    assert len(rig.transport.requests) == 1
    assert rig.observer.of("cache") == ["miss", "hit"]


@pytest.mark.parametrize("error", [bad_response, server_error], ids=["bad-response", "5xx"])
async def test_errors_are_not_cached(error: ErrorFactory) -> None:
    """A call that failed is made again next time, and its answer then served."""
    retry = RETRY.model_copy(update={"max_attempts": 1})
    rig = Rig([error(), ANSWER], retry=retry)

    await rig.fails()
    response = await rig.call()

    assert response.attempts == 1
    assert len(rig.transport.requests) == 2
    assert rig.observer.of("cache") == ["miss", "miss"]


async def test_a_failed_half_open_probe_is_not_an_attempt_of_the_record() -> None:
    """A probe that fails re-opens the breaker without spending the record's attempts."""
    breaker = BreakerConfig(consecutive_failures=1, open_s=SHORT_OPEN_S)
    retry = RETRY.model_copy(update={"max_attempts": 2})
    rig = Rig(
        [server_error(), server_error(), ANSWER],
        retry=retry,
        breaker=breaker,
        real_breaker_clock=True,
    )

    response = await rig.call()

    assert response.attempts == 2
    assert len(rig.transport.requests) == 3
    assert rig.observer.of("breaker_changed") == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


async def test_an_open_breaker_parks_the_record_without_spending_attempts() -> None:
    """Through an outage of several failed probes the record waits, blocked, then succeeds."""
    breaker = BreakerConfig(consecutive_failures=1, open_s=SHORT_OPEN_S)
    retry = RETRY.model_copy(update={"max_attempts": 2})
    outage: list[Answer] = [server_error() for _ in range(4)]
    rig = Rig([*outage, ANSWER], retry=retry, breaker=breaker, real_breaker_clock=True)

    async def lane() -> UpstreamResponse:
        CURRENT_PARTITION.set(("orders", 3))
        return await rig.call()

    response = await asyncio.wait_for(asyncio.create_task(lane()), BOUND_S)

    assert response.body == ANSWER.body
    assert response.attempts == 2
    assert len(rig.transport.requests) == 5
    half_opened_with = [blocked for state, blocked in rig.transitions if state is HALF_OPEN]
    assert half_opened_with == [{("orders", 3)}] * 4
    assert rig.board.blocked() == set()


async def test_rate_limits_do_not_trip_the_breaker() -> None:
    """A 429 is an answer, not an outage: the breaker stays closed."""
    breaker = BreakerConfig(consecutive_failures=1)
    rig = Rig([rate_limited(), rate_limited(), ANSWER], breaker=breaker)

    await rig.call()

    assert rig.breaker.state is CLOSED
    assert rig.observer.of("breaker_changed") == []


async def test_retries_are_logged_as_retry_scheduled() -> None:
    """Each retry logs ``upstream.retry_scheduled`` with the upstream, attempt, delay and error."""
    rig = Rig([timeout(), server_error(), ANSWER])

    with capture_logs() as logs:
        await rig.call()

    retries = [entry for entry in logs if entry["event"] == "upstream.retry_scheduled"]
    assert retries == [
        {
            "event": "upstream.retry_scheduled",
            "upstream": UPSTREAM,
            "attempt": 1,
            "delay_s": round(rig.time.sleeps[0], 3),
            "error": "upstream.timeout",
            "log_level": "info",
        },
        {
            "event": "upstream.retry_scheduled",
            "upstream": UPSTREAM,
            "attempt": 2,
            "delay_s": round(rig.time.sleeps[1], 3),
            "error": "upstream.unavailable",
            "log_level": "info",
        },
    ]
