"""The watchdog: once a second, is the engine stalled, and is memory over its budget?

- **Stall**: records are in flight and none has finished for ``engine.stall_timeout_s``.
  ``/status`` and the ``processor_stalled`` gauge say so (the probes do not: an upstream
  outage is no reason to restart or unready the pod) and one ``engine.stalled`` line
  names the partition and offset holding the watermark back and the longest-running
  activity (which check, which upstream). When records finish again: ``engine.unstalled``.
- **Memory**: with ``engine.max_rss_mib`` set, resident memory above it sets the engine's
  ``memory_pressure`` (the intake pauses everything) until it is back under 90%.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Callable

import structlog

from processor.engine import Engine
from processor.waits import ActivityBoard

log = structlog.get_logger("processor.watchdog")
RESUME_BELOW = 0.9


def read_rss_mib() -> float:
    """This process's resident memory now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:  # a tiny kernel read, once a second
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Watchdog:
    """Watches progress and memory; owns the ``stalled`` flag (reported, not a probe)."""

    def __init__(
        self,
        engine: Engine,
        activity: ActivityBoard,
        stall_timeout_s: float,
        max_rss_mib: int | None,
        rss_mib: Callable[[], float] = read_rss_mib,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = 1.0,
    ) -> None:
        self._engine = engine
        self._activity = activity
        self._stall_timeout_s = stall_timeout_s
        self._max_rss_mib = max_rss_mib
        self._rss_mib = rss_mib
        self._clock = clock
        self._interval_s = interval_s
        self.stalled = False
        self.peak_rss_mib = 0.0

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self._interval_s)

    def check(self) -> None:
        """One look at progress and memory."""
        engine = self._engine
        idle_s = self._clock() - engine.last_progress_at
        stuck = engine.in_flight > 0 and idle_s >= self._stall_timeout_s
        if stuck and not self.stalled:
            self.stalled = True
            where = engine.oldest_pending()
            activity = self._activity.oldest()
            log.error(
                "engine.stalled",
                topic=where[0][0] if where else None,
                partition=where[0][1] if where else None,
                offset=where[1] if where else None,
                stuck_on=activity[1] if activity else "publishing or queued behind a lane",
                stuck_for_s=round(activity[2], 1) if activity else None,
                in_flight=engine.in_flight,
                idle_s=round(idle_s, 1),
            )
        elif self.stalled and not stuck:
            self.stalled = False
            log.info("engine.unstalled", in_flight=engine.in_flight)
        rss = self._rss_mib()
        self.peak_rss_mib = max(self.peak_rss_mib, rss)
        if self._max_rss_mib is None:
            return
        if not engine.memory_pressure and rss > self._max_rss_mib:
            engine.memory_pressure = True
            log.warning("engine.memory_pressure", rss_mib=round(rss), budget_mib=self._max_rss_mib)
        elif engine.memory_pressure and rss < self._max_rss_mib * RESUME_BELOW:
            engine.memory_pressure = False
            log.info("engine.memory_ok", rss_mib=round(rss), budget_mib=self._max_rss_mib)
