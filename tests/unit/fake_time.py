"""A fake monotonic clock with a fake sleep, shared by the unit tests of the upstream layer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class FakeTime:
    """A clock that moves only when a fake sleep ends or a test advances it.

    :meth:`sleep` records what was asked, runs a pending one-shot hook (to change the world
    while the caller sleeps), yields once so that callers started together all look at
    the clock before it moves, then moves the clock to the end of that sleep (never back).
    """

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.hooks: list[Callable[[], None]] = []

    def clock(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wakes_at = self.now + seconds
        if self.hooks:
            self.hooks.pop(0)()
        await asyncio.sleep(0)
        self.now = max(self.now, wakes_at)


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Let other tasks run (no real time passing) until ``condition`` holds, for ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0)
