"""A circuit breaker for one upstream that makes callers wait instead of failing.

States: ``closed`` (calls flow; failures counted), ``open`` (no calls; callers wait in
:meth:`CircuitBreaker.admit`, their partitions marked blocked on the wait board, for
``open_s``), ``half_open`` (``half_open_probes`` calls go through; if they all succeed the
breaker closes, one failure opens it again).

It trips when, while closed, ``consecutive_failures`` calls fail in a row, or at least
``min_calls`` calls in the last ``window_s`` failed at ``failure_rate`` or more. Failures are
timeouts, connection errors and 5xx; a 429 or other 4xx is an answer, not an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from enum import StrEnum

import structlog

from processor.config import BreakerConfig
from processor.waits import WaitBoard

log = structlog.get_logger("processor.upstream.breaker")


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class CircuitBreaker:
    """Failure accounting and the admission gate of one upstream."""

    def __init__(
        self,
        upstream: str,
        config: BreakerConfig,
        board: WaitBoard,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] = lambda _s: None,
    ) -> None:
        self.upstream = upstream
        self._cfg = config
        self._board = board
        self._clock = clock
        self._on_change = on_change
        self.state = BreakerState.CLOSED
        self._opened_until = 0.0
        self._calls: deque[tuple[float, bool]] = deque()  # (when, failed) while closed
        self._failures_in_window = 0
        self._consecutive = 0
        self._probes_out = 0
        self._probe_successes = 0
        self._changed = asyncio.Event()

    def _to(self, state: BreakerState, **why: object) -> None:
        if state is self.state:
            return
        log.info("breaker.transition", upstream=self.upstream, old=self.state.value,
                 new=state.value, **why)  # fmt: skip
        self.state = state
        self._calls.clear()
        self._failures_in_window = 0
        self._consecutive = 0
        self._probes_out = 0
        self._probe_successes = 0
        if state is BreakerState.OPEN:
            self._opened_until = self._clock() + self._cfg.open_s
        self._on_change(state)
        self._changed.set()
        self._changed = asyncio.Event()

    def _closed(self) -> bool:
        return self.state is BreakerState.CLOSED

    async def admit(self, also: Iterable[Hashable | None] = ()) -> bool:
        """Wait until a call may go out; True if it is a half-open probe. While it waits,
        the caller's partition and ``also`` those (a batch's records') count as blocked."""
        if not self._cfg.enabled or self.state is BreakerState.CLOSED:
            return False
        with self._board.waiting(also):
            while True:
                if self._closed():  # (re-read: the state changes while we wait)
                    return False
                if self.state is BreakerState.OPEN and self._clock() >= self._opened_until:
                    self._to(BreakerState.HALF_OPEN)
                if (
                    self.state is BreakerState.HALF_OPEN
                    and self._probes_out < self._cfg.half_open_probes
                ):
                    self._probes_out += 1
                    return True
                changed = self._changed
                timeout = None
                if self.state is BreakerState.OPEN:
                    timeout = max(0.0, self._opened_until - self._clock())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout)

    def record(self, probe: bool, failed: bool | None) -> None:
        """Report how an admitted call ended: failed, succeeded, or None (no verdict: a 4xx)."""
        if not self._cfg.enabled:
            return
        if probe:
            self._probes_out = max(0, self._probes_out - 1)
            if self.state is not BreakerState.HALF_OPEN:
                return
            if failed:
                self._to(BreakerState.OPEN, reason="probe failed")
            elif failed is False:
                self._probe_successes += 1
                if self._probe_successes >= self._cfg.half_open_probes:
                    self._to(BreakerState.CLOSED, reason="probes succeeded")
            else:
                self._changed.set()  # a probe slot is free again
                self._changed = asyncio.Event()
            return
        if self.state is not BreakerState.CLOSED or failed is None:
            return
        now = self._clock()
        self._calls.append((now, failed))
        self._failures_in_window += failed
        while self._calls and self._calls[0][0] < now - self._cfg.window_s:
            _, old_failed = self._calls.popleft()
            self._failures_in_window -= old_failed
        self._consecutive = self._consecutive + 1 if failed else 0
        calls = len(self._calls)
        if self._consecutive >= self._cfg.consecutive_failures:
            self._to(BreakerState.OPEN, reason="consecutive failures", failures=self._consecutive)
        elif (
            calls >= self._cfg.min_calls
            and self._failures_in_window / calls >= self._cfg.failure_rate
        ):
            self._to(BreakerState.OPEN, reason="failure rate",
                     failure_rate=round(self._failures_in_window / calls, 3))  # fmt: skip
