"""The dead-letter guard: stop taking records when too many recent outcomes are dead letters.

A bad deploy (a typo in a check's path, a renamed field, an upstream answering 404) sends
every record to the dead-letter topic. The guard watches the outcomes of the last
``window_s`` seconds; once at least ``min_outcomes`` of them are in and the dead-letter
share exceeds ``max_dead_letter_ratio``, it *trips*: the engine takes nothing new (every
partition is paused, so records wait in Kafka instead of filling the dead-letter topic),
records already taken finish, readiness stays true, ``processor_dead_letter_guard_tripped``
is 1 (the ``DeadLetterGuardTripped`` alert), and one ``guard.tripped`` log line says why.

It resumes on operator action (``POST /guard/resume`` on the operations endpoint, or
SIGUSR2) or, with ``resume: auto``, after ``cooldown_s``; the window starts empty again.
Pure logic and a clock: no I/O.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from processor.config import GuardConfig

log = structlog.get_logger("processor.guard")


@dataclass
class _Second:
    at: int
    total: int = 0
    dead: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


class DeadLetterGuard:
    """Trips on the dead-letter share of a sliding window of outcomes (see the module)."""

    def __init__(
        self,
        config: GuardConfig,
        on_change: Callable[[bool], None] = lambda _tripped: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._on_change = on_change
        self._clock = clock
        self._seconds: deque[_Second] = deque()
        self.tripped = False
        self.tripped_at: float | None = None
        self.why: dict[str, Any] = {}

    def observe(self, dead: bool, reason: str) -> None:
        """Count one acknowledged outcome; trip if the window says so."""
        if not self._config.enabled or self.tripped:
            return
        now = int(self._clock())
        if not self._seconds or self._seconds[-1].at != now:
            self._seconds.append(_Second(now))
        second = self._seconds[-1]
        second.total += 1
        if dead:
            second.dead += 1
            second.reasons[reason] += 1
        self._check(now)

    def _check(self, now: int) -> None:
        while self._seconds and self._seconds[0].at <= now - self._config.window_s:
            self._seconds.popleft()
        total = sum(s.total for s in self._seconds)
        dead = sum(s.dead for s in self._seconds)
        if total < self._config.min_outcomes or dead <= total * self._config.max_dead_letter_ratio:
            return
        reasons: Counter[str] = Counter()
        for second in self._seconds:
            reasons.update(second.reasons)
        self.tripped, self.tripped_at = True, self._clock()
        self.why = {
            "dead_letters": dead, "outcomes": total, "ratio": round(dead / total, 3),
            "max_ratio": self._config.max_dead_letter_ratio, "window_s": self._config.window_s,
            "top_reasons": dict(reasons.most_common(3)),
        }  # fmt: skip
        resume = (
            f"automatically after {self._config.cooldown_s:g}s"
            if self._config.resume == "auto"
            else "on POST /guard/resume or SIGUSR2"
        )
        log.error("guard.tripped", **self.why, intake="paused", resumes=resume)
        self._on_change(True)

    def tick(self) -> None:
        """Resume after the cool-down (``resume: auto``); called every second or so."""
        if (
            self.tripped
            and self._config.resume == "auto"
            and self.tripped_at is not None
            and self._clock() - self.tripped_at >= self._config.cooldown_s
        ):
            self.resume("cooldown")

    def resume(self, by: str) -> bool:
        """Take records again, with an empty window; False if it was not tripped."""
        if not self.tripped:
            return False
        held_s = self._clock() - (self.tripped_at or self._clock())
        self.tripped, self.tripped_at, self.why = False, None, {}
        self._seconds.clear()
        log.warning("guard.resumed", by=by, held_s=round(held_s, 1))
        self._on_change(False)
        return True

    def state(self) -> dict[str, Any]:
        """For ``/status``."""
        return {"enabled": self._config.enabled, "tripped": self.tripped, **self.why}
