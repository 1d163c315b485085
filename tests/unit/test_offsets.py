"""Tests of the per-partition offset watermark: what is safe to commit, and when."""

from __future__ import annotations

import random

import pytest

from processor.offsets import PartitionOffsets


def _taken(*offsets: int) -> PartitionOffsets:
    state = PartitionOffsets()
    for offset in offsets:
        state.take(offset)
    return state


def test_a_fresh_partition_has_nothing_to_commit() -> None:
    """Before anything finishes there is no watermark and nothing to commit."""
    state = _taken(0, 1, 2)
    assert state.committable is None
    assert state.to_commit() is None


def test_watermark_advances_over_the_finished_prefix_only() -> None:
    """Finishing the first offset makes one past it committable, not the highest seen."""
    state = _taken(0, 1, 2)
    state.finish(0)
    assert state.committable == 1
    assert state.to_commit() == 1


def test_an_out_of_order_finish_waits_for_the_gap_below_it() -> None:
    """A later offset finishing first does not move the watermark past an unfinished one."""
    state = _taken(0, 1, 2, 3)
    state.finish(2)
    state.finish(3)
    assert state.committable is None
    state.finish(1)
    assert state.committable is None
    state.finish(0)
    assert state.committable == 4


def test_the_watermark_stops_at_the_lowest_unfinished_offset() -> None:
    """With 0 and 2 finished, only offset 1 is committable (offset 1 is still in flight)."""
    state = _taken(0, 1, 2)
    state.finish(0)
    state.finish(2)
    assert state.committable == 1


@pytest.mark.parametrize(
    ("taken", "finished", "committable"),
    [
        ((5, 7, 10), (5,), 6),
        ((5, 7, 10), (5, 7), 8),
        ((5, 7, 10), (7, 10, 5), 11),
        ((5, 7, 10), (7, 10), None),
        ((100,), (100,), 101),
    ],
)
def test_gaps_in_the_log_do_not_stall_the_watermark(
    taken: tuple[int, ...], finished: tuple[int, ...], committable: int | None
) -> None:
    """Offsets never taken (compaction, transaction markers) are not waited for."""
    state = _taken(*taken)
    for offset in finished:
        state.finish(offset)
    assert state.committable == committable


def test_to_commit_returns_none_once_the_watermark_was_committed() -> None:
    """After committing the watermark, nothing new is reported until it advances again."""
    state = _taken(0, 1)
    state.finish(0)
    offset = state.to_commit()
    assert offset == 1
    state.committed = offset
    assert state.to_commit() is None
    state.finish(1)
    assert state.to_commit() == 2


@pytest.mark.parametrize("offset", [3, 2])
def test_taking_a_non_increasing_offset_raises(offset: int) -> None:
    """Taking an offset equal to or below the last one taken is a ValueError."""
    state = _taken(1, 3)
    with pytest.raises(ValueError, match=f"offset {offset} taken after 3"):
        state.take(offset)


def test_in_flight_counts_taken_minus_finished_records() -> None:
    """in_flight counts taken records not yet finished, wherever they sit in the order."""
    state = PartitionOffsets()
    assert state.in_flight == 0
    for offset in (0, 1, 2, 3):
        state.take(offset)
    assert state.in_flight == 4
    state.finish(2)
    assert state.in_flight == 3
    state.finish(0)
    assert state.in_flight == 2
    state.finish(1)
    state.finish(3)
    assert state.in_flight == 0


def _expected_committable(taken: list[int], finished: set[int]) -> int | None:
    """1 + the largest o with every taken offset <= o finished; None if there is none."""
    best: int | None = None
    for offset in taken:  # ascending
        if offset not in finished:
            break
        best = offset + 1
    return best


@pytest.mark.parametrize("seed", range(20))
def test_committable_matches_the_definition_for_random_finish_orders(seed: int) -> None:
    """Across many shuffled finish orders the watermark equals its definition after each step."""
    rng = random.Random(seed)
    for _ in range(25):
        taken = sorted(rng.sample(range(200), rng.randint(1, 40)))
        order = taken[:]
        rng.shuffle(order)
        state = _taken(*taken)
        finished: set[int] = set()
        for offset in order:
            state.finish(offset)
            finished.add(offset)
            assert state.committable == _expected_committable(taken, finished)
            assert state.in_flight == len(taken) - len(finished)
