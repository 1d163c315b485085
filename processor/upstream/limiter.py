"""A token-bucket rate limiter for one upstream, that can also be told to hold off.

``rate_per_s`` tokens a second, at most ``burst`` saved up. :meth:`TokenBucket.acquire`
waits for a token; waiters are served first come, first served, each spaced by the rate,
so N callers at once never exceed the limit. :meth:`TokenBucket.hold_until` (a 429's
``Retry-After``) stops every caller until that moment, whatever tokens are saved.

Written here rather than taken from a library: we need the hold-off that honours
``Retry-After`` for every caller of the upstream, which the asyncio limiters on PyPI lack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """Rate limit with burst, FIFO fairness and an upstream-imposed pause."""

    def __init__(
        self,
        rate_per_s: float | None,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._interval_s = 1.0 / rate_per_s if rate_per_s else 0.0
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        # The moment the next token is free: a "virtual schedule" (GCRA) instead of a counter.
        self._next_free = clock()
        self._hold_until = 0.0

    def hold_until(self, moment: float) -> None:
        """No token is handed out before ``moment`` (monotonic clock)."""
        self._hold_until = max(self._hold_until, moment)

    async def acquire(self) -> float:
        """Wait for a token; return the seconds waited."""
        now = self._clock()
        if not self._interval_s:
            wait = max(0.0, self._hold_until - now)
        else:
            earliest = max(self._next_free, now - (self._burst - 1) * self._interval_s)
            slot = max(earliest, self._hold_until)
            self._next_free = slot + self._interval_s
            wait = max(0.0, slot - now)
        if wait > 0:
            await self._sleep(wait)
            # A Retry-After may have arrived while we slept: honour it too.
            late = self._hold_until - self._clock()
            if late > 0:
                await self._sleep(late)
                wait += late
        return wait
