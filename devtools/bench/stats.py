"""The benchmark's arithmetic, pure: steady-state rate, CPU per record, percentiles, verdicts.

Rates come from the broker's own clock: outcome topics are created with
``message.timestamp.type=LogAppendTime``, so each outcome's timestamp is when the broker
appended it. The steady window leaves out the first and last 10% of outcomes (process
start, group join, the tail); CPU time is interpolated from the sampler at the window's
two ends, so start-up work is not charged to the records.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Window:
    """The steady part of a run: ``count`` outcomes between ``start_s`` and ``end_s``."""

    start_s: float
    end_s: float
    count: int

    @property
    def rate(self) -> float:
        span = self.end_s - self.start_s
        return self.count / span if span > 0 else math.inf


def steady_window(times_s: Sequence[float], lo: float = 0.1, hi: float = 0.9) -> Window:
    """The window from the ``lo`` to the ``hi`` quantile of (sorted) outcome times.

    Raises:
        ValueError: Fewer than 10 times, too few for a rate.
    """
    if len(times_s) < 10:
        raise ValueError(f"{len(times_s)} outcomes are too few to measure a rate")
    first = int(len(times_s) * lo)
    last = max(first + 1, int(len(times_s) * hi) - 1)
    return Window(times_s[first], times_s[last], last - first)


def interpolate(samples: Sequence[tuple[float, float]], at: float) -> float:
    """The value of a sampled, increasing series (time, value) at time ``at``, linearly.

    Clamped to the first and last samples outside their range.

    Raises:
        ValueError: No samples.
    """
    if not samples:
        raise ValueError("no samples")
    times = [t for t, _ in samples]
    i = bisect.bisect_left(times, at)
    if i == 0:
        return samples[0][1]
    if i == len(samples):
        return samples[-1][1]
    (t0, v0), (t1, v1) = samples[i - 1], samples[i]
    return v0 if t1 == t0 else v0 + (v1 - v0) * (at - t0) / (t1 - t0)


def cpu_per_1k(samples: Sequence[tuple[float, float]], window: Window) -> float:
    """CPU seconds spent per 1,000 outcomes inside ``window`` (samples: time, CPU seconds)."""
    spent = interpolate(samples, window.end_s) - interpolate(samples, window.start_s)
    return 1000.0 * spent / window.count if window.count else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of unsorted ``values``.

    Raises:
        ValueError: No values, or q out of range.
    """
    if not values:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not within (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Target:
    """What a scenario's ratio to its bound must be: at least ``low``, at most ``high``."""

    low: float | None = None
    high: float | None = None

    def met(self, ratio: float | None) -> bool | None:
        if ratio is None or (self.low is None and self.high is None):
            return None
        return (self.low is None or ratio >= self.low) and (self.high is None or ratio <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:.2f}..{self.high:.2f}"
        if self.low is not None:
            return f">= {self.low:.2f}"
        if self.high is not None:
            return f"<= {self.high:.2f}"
        return "-"


def upstream_bound(
    concurrency: int, latency_ms: float, schema_rate: float | None
) -> tuple[float, str]:
    """Upstream-bound's bound and what it is: Little's law (``concurrency`` calls of
    ``latency_ms`` in flight), or the schema-only rate when lower."""
    little = concurrency / (latency_ms / 1000)
    bound = min(little, schema_rate) if schema_rate else little
    return bound, "Little's law" if bound == little else "schema-only records/s"
