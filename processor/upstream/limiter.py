"""A token-bucket rate limiter for one upstream, that can also be told to hold off.

``rate_per_s`` tokens a second, at most ``burst`` saved up (a new bucket starts full).
Callers queue first come, first served behind one lock; the one at the head sleeps until
a token has refilled, measured on the real clock at the moment it is granted. So a late
wake-up (a busy event loop) never turns into a burst beyond ``burst``, and the lateness is
not lost either: refill follows real elapsed time. :meth:`TokenBucket.hold_until` (a 429's
``Retry-After``) stops every caller until that moment, whatever tokens are saved.

Written here rather than taken from a library: we need the hold-off that honours
``Retry-After`` for every caller of the upstream, which the asyncio limiters on PyPI lack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

_EPSILON = 1e-9  # float refill rounding must not cost a second sleep


class TokenBucket:
    """Rate limit with burst, FIFO fairness and an upstream-imposed pause."""

    def __init__(
        self,
        rate_per_s: float | None,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._refilled_at = clock()
        self._hold_until = 0.0
        self._lock = asyncio.Lock()

    def hold_until(self, moment: float) -> None:
        """No token is handed out before ``moment`` (monotonic clock)."""
        self._hold_until = max(self._hold_until, moment)

    def _refill(self, now: float) -> None:
        if self._rate:
            elapsed = max(0.0, now - self._refilled_at)
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._refilled_at = now

    async def acquire(self) -> float:
        """Wait for a token; return the seconds waited."""
        if not self._rate and self._hold_until <= self._clock():
            return 0.0
        arrived = self._clock()
        async with self._lock:  # FIFO: the head of the queue sleeps, the others wait behind it
            while True:
                now = self._clock()
                self._refill(now)
                wait = self._hold_until - now
                if self._rate and self._tokens < 1.0 - _EPSILON:
                    wait = max(wait, (1.0 - self._tokens) / self._rate)
                if wait <= 0:
                    if self._rate:
                        self._tokens -= 1.0
                    return now - arrived
                await self._sleep(wait)
