"""The benchmark's arithmetic: steady window, CPU interpolation, percentiles, targets."""

from __future__ import annotations

import math

import pytest

from devtools.bench.stats import (
    Target,
    Window,
    cpu_per_1k,
    interpolate,
    percentile,
    steady_window,
    upstream_bound,
)


def test_steady_window_leaves_out_the_start_and_the_tail() -> None:
    """The steady window leaves out the slow start and tail and measures the rate between."""
    # 100 outcomes: a slow start (10 at t=0..9), then one every 0.01 s, then a slow tail
    times = [float(i) for i in range(10)] + [10 + 0.01 * i for i in range(80)]
    times += [20.0 + i for i in range(10)]
    window = steady_window(times)
    assert window.count == 79
    assert window.rate == pytest.approx(100.0)


def test_steady_window_needs_enough_outcomes() -> None:
    """Too few outcomes for a window is an error, not a made-up rate."""
    with pytest.raises(ValueError, match="too few"):
        steady_window([1.0, 2.0])


def test_interpolate_is_linear_and_clamped() -> None:
    """Interpolation is linear between samples and clamped outside them."""
    samples = [(0.0, 0.0), (1.0, 10.0), (3.0, 30.0)]
    assert interpolate(samples, 0.5) == pytest.approx(5.0)
    assert interpolate(samples, 2.0) == pytest.approx(20.0)
    assert interpolate(samples, -1.0) == 0.0
    assert interpolate(samples, 9.0) == 30.0


def test_cpu_per_1k_charges_only_the_window() -> None:
    """CPU per 1,000 records counts only the CPU spent inside the steady window."""
    cpu = [(0.0, 5.0), (10.0, 6.0), (20.0, 8.0)]  # 5 s of start-up before t=0
    assert cpu_per_1k(cpu, Window(10.0, 20.0, 4_000)) == pytest.approx(0.5)
    assert math.isnan(cpu_per_1k(cpu, Window(10.0, 20.0, 0)))


def test_percentile_nearest_rank() -> None:
    """Percentiles use the nearest-rank method on unsorted input and refuse 0."""
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    with pytest.raises(ValueError, match="within"):
        percentile(values, 0)


@pytest.mark.parametrize(
    ("target", "ratio", "met"),
    [
        (Target(low=0.7), 0.69, False),
        (Target(low=0.7), 0.70, True),
        (Target(low=0.98, high=1.02), 1.021, False),
        (Target(low=0.98, high=1.02), 0.99, True),
        (Target(high=1.0), 0.4, True),
        (Target(), 0.5, None),
        (Target(low=0.9), None, None),
    ],
)
def test_targets(target: Target, ratio: float | None, met: bool | None) -> None:
    """A target is met inside its bounds, missed outside, and undecided without a ratio or bound."""
    assert target.met(ratio) is met


def test_upstream_bound_is_littles_law_unless_schema_only_is_lower() -> None:
    """256 calls of 20 ms bound at 12,800/s; a slower schema-only rate takes its place."""
    assert upstream_bound(256, 20.0, None) == (12_800.0, "Little's law")
    assert upstream_bound(256, 20.0, 20_000.0) == (12_800.0, "Little's law")
    assert upstream_bound(256, 20.0, 4_750.0) == (4_750.0, "schema-only records/s")
