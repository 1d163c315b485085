"""The broker's reachability as the status poller sees it: one event when it goes, one when
it is back.

While the broker is down, aiokafka logs every failed connection and metadata attempt (some
3,700 lines a minute; :mod:`processor.logs` keeps one of each kind a minute). What an
operator needs is the two transitions, so :class:`Reachability`, fed one probe result per
status interval, logs ``kafka.unreachable`` (with the address and since when) on the first
failed probe and ``kafka.reachable`` (with how long it was down) on the first good one after,
and keeps the ``processor_broker_reachable`` gauge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from prometheus_client import Gauge

log = structlog.get_logger("processor.reachability")


class Reachability:
    """The transitions of one broker address between reachable and unreachable."""

    def __init__(
        self, address: str, gauge: Gauge, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._address = address
        self._gauge = gauge
        self._clock = clock
        self._down_since: tuple[float, str] | None = None  # (monotonic, wall clock ISO)

    @property
    def down_s(self) -> float | None:
        """How long the broker has been unreachable (None while it is reachable)."""
        return None if self._down_since is None else self._clock() - self._down_since[0]

    def observe(self, reachable: bool) -> None:
        """Take one probe result; log the transition it makes, if any."""
        self._gauge.set(int(reachable))
        if not reachable and self._down_since is None:
            since = datetime.now(UTC).isoformat(timespec="milliseconds")
            self._down_since = (self._clock(), since)
            log.warning("kafka.unreachable", address=self._address, since=since)
        elif reachable and self._down_since is not None:
            down_s = round(self._clock() - self._down_since[0], 1)
            since = self._down_since[1]
            self._down_since = None
            log.info("kafka.reachable", address=self._address, since=since, down_s=down_s)
