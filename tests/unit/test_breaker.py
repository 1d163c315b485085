"""Tests of the circuit breaker: failure accounting, the admission gate, and the wait board."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from processor.config import BreakerConfig
from processor.upstream.breaker import BreakerState, CircuitBreaker
from processor.waits import CURRENT_PARTITION, WaitBoard
from tests.unit.fake_time import FakeTime, eventually

BOUND_S = 5.0
#: Long enough to show that a waiter is still waiting, short enough to keep the suite fast.
STILL_WAITING_S = 0.05
#: A real open period, for the tests of the timed open -> half-open transition.
SHORT_OPEN_S = 0.05

FAIL, OK, NO_VERDICT = True, False, None
CLOSED, HALF_OPEN, OPEN = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN
PARTITION = ("orders", 3)

#: A configuration where neither trigger fires unless a test lowers it.
QUIET: dict[str, Any] = {"consecutive_failures": 1_000, "min_calls": 1_000, "open_s": 30.0}


class Rig:
    """A breaker on a fake (or real) clock, its wait board, and the transitions it reported."""

    def __init__(self, clock: Callable[[], float] | None = None, **config: Any) -> None:
        self.time = FakeTime()
        self.board = WaitBoard()
        self.changes: list[BreakerState] = []
        self.breaker = CircuitBreaker(
            "email",
            BreakerConfig(**{**QUIET, **config}),
            self.board,
            clock=clock or self.time.clock,
            on_change=self.changes.append,
        )

    def record(self, verdicts: Sequence[bool | None]) -> None:
        for failed in verdicts:
            self.breaker.record(probe=False, failed=failed)

    def trip(self) -> None:
        """Open the breaker with a run of failures (``consecutive_failures`` must be 1)."""
        self.breaker.record(probe=False, failed=True)
        assert self.breaker.state is OPEN

    def wait_in_task(self, partition: Hashable | None = PARTITION) -> asyncio.Task[bool]:
        """Call ``admit()`` in its own task, as a lane working on ``partition`` would."""

        async def lane() -> bool:
            CURRENT_PARTITION.set(partition)
            return await self.breaker.admit()

        return asyncio.create_task(lane())


async def _still_waiting(task: asyncio.Task[bool]) -> bool:
    done, _ = await asyncio.wait({task}, timeout=STILL_WAITING_S)
    return not done


async def test_closed_breaker_admits_at_once_and_not_as_a_probe() -> None:
    """A closed breaker lets a call through at once, as an ordinary call."""
    rig = Rig()

    probe = await asyncio.wait_for(rig.breaker.admit(), BOUND_S)

    assert probe is False
    assert rig.board.blocked() == set()


@pytest.mark.parametrize("run", [1, 3, 5])
async def test_trips_after_consecutive_failures(run: int) -> None:
    """The breaker opens at the ``consecutive_failures``-th failure in a row, not before."""
    rig = Rig(consecutive_failures=run)

    rig.record([FAIL] * (run - 1))
    assert rig.breaker.state is CLOSED
    rig.record([FAIL])

    assert rig.breaker.state is OPEN
    assert rig.changes == [OPEN]


async def test_a_success_resets_the_run_of_failures() -> None:
    """A success between failures starts the run again."""
    rig = Rig(consecutive_failures=3)

    rig.record([FAIL, FAIL, OK, FAIL, FAIL])
    assert rig.breaker.state is CLOSED
    rig.record([FAIL])

    assert rig.breaker.state is OPEN


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([FAIL, OK, FAIL], CLOSED),  # 2/3 failed, but fewer than min_calls
        ([FAIL, OK, FAIL, OK], OPEN),  # 2/4 reaches the rate
        ([FAIL, OK, OK, OK], CLOSED),  # 1/4 is below it
        ([OK, OK, OK, FAIL, FAIL], CLOSED),  # 2/5
        ([OK, OK, OK, FAIL, FAIL, FAIL], OPEN),  # 3/6
    ],
)
async def test_failure_rate_trips_only_once_min_calls_are_in_the_window(
    verdicts: list[bool], expected: BreakerState
) -> None:
    """The failure rate opens the breaker only with at least ``min_calls`` calls counted."""
    rig = Rig(failure_rate=0.5, min_calls=4, window_s=10.0)

    rig.record(verdicts)

    assert rig.breaker.state is expected


@pytest.mark.parametrize(("gap_s", "expected"), [(9.5, OPEN), (10.5, CLOSED)])
async def test_calls_older_than_the_window_no_longer_count(
    gap_s: float, expected: BreakerState
) -> None:
    """Calls older than ``window_s`` fall out of the failure rate."""
    rig = Rig(failure_rate=0.5, min_calls=4, window_s=10.0)
    rig.record([FAIL, OK])
    rig.time.advance(gap_s)

    rig.record([OK, FAIL])

    assert rig.breaker.state is expected


@pytest.mark.parametrize(
    ("config", "verdicts", "expected"),
    [
        ({"consecutive_failures": 3}, [FAIL, FAIL, NO_VERDICT, FAIL], OPEN),
        ({"failure_rate": 0.5, "min_calls": 3}, [OK, NO_VERDICT, NO_VERDICT], CLOSED),
        ({"failure_rate": 1.0, "min_calls": 2}, [FAIL, NO_VERDICT, FAIL], OPEN),
        ({"consecutive_failures": 1, "min_calls": 1}, [NO_VERDICT] * 50, CLOSED),
    ],
    ids=["keeps-the-run", "not-a-failure", "not-a-call", "never-trips"],
)
async def test_a_call_without_verdict_counts_for_nothing(
    config: dict[str, Any], verdicts: list[bool | None], expected: BreakerState
) -> None:
    """``failed=None`` (a 429 or other 4xx) is neither a failure, a success nor a call."""
    rig = Rig(**config)

    rig.record(verdicts)

    assert rig.breaker.state is expected


async def test_a_late_result_of_a_call_admitted_before_the_trip_is_ignored() -> None:
    """A non-probe call that ends while the breaker is open changes nothing."""
    rig = Rig(consecutive_failures=1)
    rig.trip()

    rig.record([OK, FAIL, OK])

    assert rig.breaker.state is OPEN
    assert rig.changes == [OPEN]


async def test_open_breaker_makes_the_caller_wait_with_its_partition_blocked() -> None:
    """While open, ``admit()`` waits with the caller's partition on the board, then lets a probe."""
    rig = Rig(clock=time.monotonic, consecutive_failures=1, open_s=SHORT_OPEN_S)
    rig.trip()
    tripped_at = time.monotonic()

    waiter = rig.wait_in_task()
    await eventually(lambda: rig.board.blocked() == {PARTITION})
    assert not waiter.done()
    probe = await asyncio.wait_for(waiter, BOUND_S)

    assert probe is True
    assert time.monotonic() - tripped_at >= SHORT_OPEN_S
    assert rig.board.blocked() == set()
    assert rig.changes == [OPEN, HALF_OPEN]


async def test_after_the_open_period_one_caller_probes_and_the_others_keep_waiting() -> None:
    """After ``open_s`` the first caller is the probe and the rest wait for its verdict."""
    rig = Rig(clock=time.monotonic, consecutive_failures=1, open_s=SHORT_OPEN_S)
    rig.trip()
    waiters = {rig.wait_in_task(("orders", p)) for p in range(3)}

    done, pending = await asyncio.wait(waiters, timeout=BOUND_S, return_when="FIRST_COMPLETED")
    assert [task.result() for task in done] == [True]
    assert not (await asyncio.wait(pending, timeout=STILL_WAITING_S))[0]
    assert len(rig.board.blocked()) == 2
    rig.breaker.record(probe=True, failed=False)
    released = await asyncio.wait_for(asyncio.gather(*pending), BOUND_S)

    assert released == [False, False]
    assert rig.breaker.state is CLOSED
    assert rig.board.blocked() == set()


async def test_probe_success_closes_and_reports_each_transition_in_order() -> None:
    """A successful probe closes the breaker, releases the waiters, and on_change saw each step."""
    rig = Rig(consecutive_failures=1)
    rig.trip()
    rig.time.advance(30.0)
    assert await asyncio.wait_for(rig.breaker.admit(), BOUND_S) is True
    waiter = rig.wait_in_task()
    assert await _still_waiting(waiter)

    rig.breaker.record(probe=True, failed=False)

    assert await asyncio.wait_for(waiter, BOUND_S) is False
    assert rig.changes == [OPEN, HALF_OPEN, CLOSED]


async def test_probe_failure_reopens_for_a_whole_open_period() -> None:
    """A failed probe opens the breaker again, and the next probe waits ``open_s`` from then."""
    rig = Rig(consecutive_failures=1, open_s=30.0)
    rig.trip()
    rig.time.advance(30.0)
    assert await asyncio.wait_for(rig.breaker.admit(), BOUND_S) is True

    rig.breaker.record(probe=True, failed=True)
    assert rig.breaker.state is OPEN
    rig.time.advance(29.0)
    early = rig.wait_in_task()
    assert await _still_waiting(early)
    early.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(early, BOUND_S)
    assert rig.board.blocked() == set()
    rig.time.advance(1.0)

    assert await asyncio.wait_for(rig.breaker.admit(), BOUND_S) is True
    assert rig.changes == [OPEN, HALF_OPEN, OPEN, HALF_OPEN]


async def test_probe_without_verdict_frees_the_slot_for_another_waiter() -> None:
    """A probe that ended in a 4xx lets the next waiter probe instead."""
    rig = Rig(consecutive_failures=1)
    rig.trip()
    rig.time.advance(30.0)
    assert await asyncio.wait_for(rig.breaker.admit(), BOUND_S) is True
    waiter = rig.wait_in_task()
    assert await _still_waiting(waiter)

    rig.breaker.record(probe=True, failed=None)

    assert await asyncio.wait_for(waiter, BOUND_S) is True
    assert rig.breaker.state is HALF_OPEN


async def test_every_half_open_probe_must_succeed_to_close() -> None:
    """With ``half_open_probes=2`` one success is not enough; the second closes the breaker."""
    rig = Rig(consecutive_failures=1, half_open_probes=2)
    rig.trip()
    rig.time.advance(30.0)
    probes = [await asyncio.wait_for(rig.breaker.admit(), BOUND_S) for _ in range(2)]
    third = rig.wait_in_task()
    assert probes == [True, True]
    assert await _still_waiting(third)

    rig.breaker.record(probe=True, failed=False)
    assert rig.breaker.state is HALF_OPEN
    assert await _still_waiting(third)
    rig.breaker.record(probe=True, failed=False)

    assert rig.breaker.state is CLOSED
    assert await asyncio.wait_for(third, BOUND_S) is False


async def test_closing_starts_a_fresh_count_of_failures() -> None:
    """Failures from before the trip do not count after the breaker closes again."""
    rig = Rig(consecutive_failures=3, failure_rate=0.5, min_calls=4)
    rig.record([OK, FAIL, FAIL, FAIL])
    rig.time.advance(30.0)
    assert await asyncio.wait_for(rig.breaker.admit(), BOUND_S) is True
    rig.breaker.record(probe=True, failed=False)

    rig.record([FAIL, FAIL])

    assert rig.breaker.state is CLOSED


async def test_disabled_breaker_never_blocks() -> None:
    """With ``enabled=False`` failures change nothing and ``admit()`` never waits."""
    rig = Rig(enabled=False, consecutive_failures=1, min_calls=1)

    rig.record([FAIL] * 20)
    probe = await asyncio.wait_for(rig.breaker.admit(), BOUND_S)

    assert probe is False
    assert rig.breaker.state is CLOSED
    assert rig.changes == []


async def test_transitions_are_logged_with_their_reason() -> None:
    """Each transition logs ``breaker.transition`` with the old and new state and why."""
    rig = Rig(consecutive_failures=2)

    with capture_logs() as logs:
        rig.record([FAIL, FAIL])
        rig.time.advance(30.0)
        await asyncio.wait_for(rig.breaker.admit(), BOUND_S)
        rig.breaker.record(probe=True, failed=False)

    assert logs == [
        {
            "event": "breaker.transition",
            "upstream": "email",
            "old": "closed",
            "new": "open",
            "reason": "consecutive failures",
            "failures": 2,
            "log_level": "info",
        },
        {
            "event": "breaker.transition",
            "upstream": "email",
            "old": "open",
            "new": "half_open",
            "log_level": "info",
        },
        {
            "event": "breaker.transition",
            "upstream": "email",
            "old": "half_open",
            "new": "closed",
            "reason": "probes succeeded",
            "log_level": "info",
        },
    ]
