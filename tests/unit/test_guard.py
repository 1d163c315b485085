"""The dead-letter guard's window, trip rule and resumption (a fake clock, no I/O)."""

from __future__ import annotations

from processor.config import GuardConfig
from processor.guard import DeadLetterGuard


class Clock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _guard(clock: Clock, changes: list[bool], **config: object) -> DeadLetterGuard:
    settings = GuardConfig.model_validate(
        {"enabled": True, "max_dead_letter_ratio": 0.5, "window_s": 10, "min_outcomes": 20,
         **config}
    )  # fmt: skip
    return DeadLetterGuard(settings, on_change=changes.append, clock=clock)


def test_trips_once_the_window_holds_enough_outcomes_and_too_many_dead_letters() -> None:
    """Below min_outcomes nothing trips; past it, a dead-letter share above the ratio does."""
    clock, changes = Clock(), list[bool]()
    guard = _guard(clock, changes)
    for _ in range(19):
        guard.observe(True, "upstream.unavailable")
    assert not guard.tripped
    guard.observe(True, "upstream.unavailable")
    assert guard.tripped
    assert changes == [True]
    assert guard.state()["top_reasons"] == {"upstream.unavailable": 20}


def test_a_share_at_or_under_the_ratio_never_trips() -> None:
    """Half dead letters with a ratio of 0.5 is not *above* it."""
    clock, changes = Clock(), list[bool]()
    guard = _guard(clock, changes)
    for i in range(200):
        guard.observe(i % 2 == 1, "decode.failed")
    assert not guard.tripped
    assert changes == []


def test_old_outcomes_leave_the_window() -> None:
    """Dead letters older than window_s no longer count."""
    clock, changes = Clock(), list[bool]()
    guard = _guard(clock, changes)
    for _ in range(15):
        guard.observe(True, "decode.failed")
    clock.now += 11
    for _ in range(10):
        guard.observe(True, "decode.failed")
    assert not guard.tripped  # 10 in the window, under min_outcomes


def test_manual_resume_only_on_request_and_with_an_empty_window() -> None:
    """Manual mode ignores the cool-down; resume() clears the window so it re-arms cleanly."""
    clock, changes = Clock(), list[bool]()
    guard = _guard(clock, changes, cooldown_s=5)
    for _ in range(20):
        guard.observe(True, "schema.invalid")
    clock.now += 60
    guard.tick()
    assert guard.tripped
    assert guard.resume("endpoint")
    assert not guard.resume("endpoint")
    assert changes == [True, False]
    guard.observe(True, "schema.invalid")
    assert not guard.tripped


def test_auto_resume_after_the_cooldown() -> None:
    """resume: auto takes records again once cooldown_s has passed, not before."""
    clock, changes = Clock(), list[bool]()
    guard = _guard(clock, changes, resume="auto", cooldown_s=30)
    for _ in range(20):
        guard.observe(True, "upstream.unavailable")
    clock.now += 29
    guard.tick()
    assert guard.tripped
    clock.now += 1
    guard.tick()
    assert not guard.tripped


def test_disabled_never_trips() -> None:
    """The default config: the guard only watches when enabled."""
    clock, changes = Clock(), list[bool]()
    guard = DeadLetterGuard(GuardConfig(), on_change=changes.append, clock=clock)
    for _ in range(1_000):
        guard.observe(True, "decode.failed")
    assert not guard.tripped
