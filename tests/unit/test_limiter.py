"""Tests of the token bucket: spacing, burst, the Retry-After hold, and the rate bound."""

from __future__ import annotations

import asyncio
import random
from itertools import pairwise

import pytest

from processor.upstream.limiter import TokenBucket
from tests.unit.fake_time import FakeTime

BOUND_S = 5.0


def _bucket(time: FakeTime, rate_per_s: float | None, burst: int = 1) -> TokenBucket:
    return TokenBucket(rate_per_s, burst, clock=time.clock, sleep=time.sleep)


async def _acquire_together(bucket: TokenBucket, time: FakeTime, n: int) -> list[float]:
    """Start ``n`` acquires at the same moment; return when each was granted (fake clock)."""

    async def one() -> float:
        await bucket.acquire()
        return time.now

    return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), BOUND_S)


@pytest.mark.parametrize("rate_per_s", [1.0, 4.0, 10.0])
async def test_concurrent_callers_at_burst_one_are_spaced_by_the_interval(
    rate_per_s: float,
) -> None:
    """Callers arriving together are granted one interval apart, the first without waiting."""
    time = FakeTime()
    bucket = _bucket(time, rate_per_s)
    interval = 1 / rate_per_s

    waits = await asyncio.wait_for(asyncio.gather(*(bucket.acquire() for _ in range(5))), BOUND_S)

    assert waits == pytest.approx([k * interval for k in range(5)])
    assert time.sleeps == pytest.approx([interval] * 4)  # the head of the queue sleeps each


@pytest.mark.parametrize(("rate_per_s", "burst"), [(1.0, 2), (2.0, 5), (10.0, 3)])
async def test_burst_lets_that_many_through_at_once_then_spaces_the_rest(
    rate_per_s: float, burst: int
) -> None:
    """With a full bucket, ``burst`` callers go at once and the others follow one interval apart."""
    time = FakeTime()
    bucket = _bucket(time, rate_per_s, burst)
    time.advance(burst / rate_per_s)  # long enough to fill the bucket
    start = time.now
    interval = 1 / rate_per_s

    granted = await _acquire_together(bucket, time, burst + 3)

    expected = [start] * burst + [start + k * interval for k in (1, 2, 3)]
    assert granted == pytest.approx(expected)


async def test_fresh_bucket_lets_burst_through_at_once() -> None:
    """A bucket just made lets ``burst`` callers through at once, as a bucket that started full."""
    time = FakeTime()
    bucket = _bucket(time, 1.0, burst=3)

    granted = await _acquire_together(bucket, time, 3)

    assert granted == pytest.approx([time.now] * 3)


@pytest.mark.parametrize("idle_s", [10.0, 10_000.0])
async def test_idling_saves_at_most_burst_tokens(idle_s: float) -> None:
    """However long the bucket idles, only ``burst`` callers are free afterwards."""
    time = FakeTime()
    bucket = _bucket(time, 2.0, burst=3)
    await _acquire_together(bucket, time, 3)
    time.advance(idle_s)
    start = time.now

    granted = await _acquire_together(bucket, time, 6)

    assert granted == pytest.approx([start] * 3 + [start + 0.5, start + 1.0, start + 1.5])


async def test_no_rate_never_waits() -> None:
    """``rate_per_s=None`` hands out every token at once and never sleeps."""
    time = FakeTime()
    bucket = _bucket(time, None, burst=1)

    waits = await asyncio.wait_for(asyncio.gather(*(bucket.acquire() for _ in range(50))), BOUND_S)

    assert waits == [0.0] * 50
    assert time.sleeps == []


@pytest.mark.parametrize(("rate_per_s", "burst"), [(None, 1), (2.0, 3), (0.5, 10)])
async def test_hold_until_makes_every_acquire_wait_even_with_tokens_saved(
    rate_per_s: float | None, burst: int
) -> None:
    """After ``hold_until(t)`` no token is handed out before t, whatever was saved up."""
    time = FakeTime()
    bucket = _bucket(time, rate_per_s, burst)
    time.advance(1_000.0)
    hold = time.now + 5.0
    bucket.hold_until(hold)

    granted = await _acquire_together(bucket, time, burst)

    assert min(granted) == pytest.approx(hold)
    assert time.sleeps[0] == pytest.approx(5.0)


async def test_an_earlier_hold_does_not_shorten_a_later_one() -> None:
    """A second ``hold_until`` for an earlier moment leaves the later hold in force."""
    time = FakeTime()
    bucket = _bucket(time, None)
    bucket.hold_until(time.now + 5.0)
    bucket.hold_until(time.now + 1.0)

    waited = await asyncio.wait_for(bucket.acquire(), BOUND_S)

    assert waited == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("rate_per_s", "hold_before_s", "expected_sleeps"),
    [(1.0, None, [1.0, 4.0]), (None, 1.0, [1.0, 4.0])],
    ids=["sleeping-for-a-token", "sleeping-for-an-earlier-hold"],
)
async def test_a_hold_set_while_a_caller_sleeps_is_honoured_after_its_sleep(
    rate_per_s: float | None, hold_before_s: float | None, expected_sleeps: list[float]
) -> None:
    """A Retry-After that arrives while a caller sleeps makes it sleep on until the hold ends."""
    time = FakeTime()
    bucket = _bucket(time, rate_per_s)
    start = time.now
    await bucket.acquire()  # take the only token, so the next caller must sleep
    if hold_before_s is not None:
        bucket.hold_until(start + hold_before_s)
    time.hooks.append(lambda: bucket.hold_until(start + 5.0))

    waited = await asyncio.wait_for(bucket.acquire(), BOUND_S)

    assert time.now == pytest.approx(start + 5.0)
    assert waited == pytest.approx(5.0)
    assert time.sleeps == pytest.approx(expected_sleeps)


async def test_callers_held_while_sleeping_stay_spaced_by_the_rate_after_the_hold() -> None:
    """Callers that were asleep when a hold arrived are granted one interval apart after it."""
    time = FakeTime()
    bucket = _bucket(time, 1.0, burst=1)
    time.hooks.append(lambda: bucket.hold_until(time.now + 10.0))

    granted = await _acquire_together(bucket, time, 3)

    assert all(later - earlier >= 1.0 - 1e-9 for earlier, later in pairwise(granted))


def _arrivals(rng: random.Random, n: int, interval: float) -> list[float]:
    """Arrival moments mixing bursts (no gap), steady traffic and long idle periods."""
    moments: list[float] = []
    now = 0.0
    for _ in range(n):
        kind = rng.random()
        if kind < 0.4:
            gap = 0.0
        elif kind < 0.9:
            gap = rng.uniform(0, 2 * interval)
        else:
            gap = rng.uniform(5 * interval, 50 * interval)
        now += gap
        moments.append(now)
    return moments


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("rate_per_s", "burst"), [(1.0, 1), (5.0, 4), (20.0, 10)])
async def test_no_window_gets_more_than_burst_plus_rate_times_its_length(
    seed: int, rate_per_s: float, burst: int
) -> None:
    """Over random arrivals, every window of length W holds at most burst + rate * W grants."""
    interval = 1 / rate_per_s
    time = FakeTime(start=0.0)
    bucket = _bucket(time, rate_per_s, burst)
    granted: list[float] = []
    for arrival in _arrivals(random.Random(seed), 300, interval):
        time.now = max(time.now, arrival)  # callers arrive one after another
        await asyncio.wait_for(bucket.acquire(), BOUND_S)
        granted.append(time.now)

    assert granted == sorted(granted), "grants are first come, first served"
    for window_s in (0.0, interval / 2, interval, 3 * interval, 10 * interval, 100 * interval):
        limit = burst + rate_per_s * window_s + 1e-6
        for start in granted:
            inside = sum(1 for g in granted if start <= g <= start + window_s)
            assert inside <= limit, (window_s, start)


async def test_a_caller_that_gives_up_costs_no_token_and_the_next_is_served() -> None:
    """A queued caller cancelled before its turn is skipped: the next caller gets its token."""
    time = FakeTime()
    bucket = _bucket(time, 1.0)
    await bucket.acquire()  # the only token: the next two must queue
    first = asyncio.create_task(bucket.acquire())
    second = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    first.cancel()
    waited = await asyncio.wait_for(second, BOUND_S)
    assert waited == pytest.approx(1.0)
    assert first.cancelled()


async def test_when_every_waiter_gives_up_the_dispatcher_ends() -> None:
    """No task outlives the callers it served (nothing left pending at shutdown)."""
    bucket = TokenBucket(1.0, 1)  # the real clock: the dispatcher sleeps for real
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    dispatcher = bucket._dispatcher
    assert dispatcher is not None
    await asyncio.wait_for(asyncio.gather(dispatcher, return_exceptions=True), BOUND_S)
    assert dispatcher.done()


async def test_one_wake_up_serves_every_token_that_is_due() -> None:
    """A late wake-up loses no rate: every token that refilled meanwhile is granted, FIFO,
    before the next sleep."""
    time = FakeTime()
    bucket = _bucket(time, 10.0, burst=5)
    for _ in range(5):
        await bucket.acquire()  # empty the bucket
    time.hooks.append(lambda: time.advance(0.4))  # the loop wakes 0.4 s late: 4 more due
    granted = await _acquire_together(bucket, time, 5)
    assert time.sleeps == pytest.approx([0.1, 0.1])  # two wake-ups for five grants
    assert granted == sorted(granted)
