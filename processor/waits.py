"""What records are waiting on outside the process: a breaker, an upstream call.

The engine sets :data:`CURRENT_PARTITION` in each lane task; whatever makes a record wait
(the breaker) wraps the wait in :meth:`WaitBoard.waiting`; the intake pauses every
partition in :meth:`WaitBoard.blocked`. So an upstream outage stops intake exactly where
records wait on it: they stay in Kafka, not in memory, and flow again when it recovers.
:class:`ActivityBoard` notes what each record is doing right now (which check), so the
stall watchdog can name what is stuck.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from contextvars import ContextVar

#: The partition of the record the current task works on (None outside a lane).
CURRENT_PARTITION: ContextVar[Hashable | None] = ContextVar("current_partition", default=None)


class WaitBoard:
    """Counts, per partition, the records waiting on an outside condition."""

    def __init__(self) -> None:
        self._waiting: Counter[Hashable] = Counter()

    @contextlib.contextmanager
    def waiting(self, also: Iterable[Hashable | None] = ()) -> Iterator[None]:
        """Mark the current task's partition, and ``also`` those (a batch's records'), as
        blocked for the duration of the block."""
        partitions = {CURRENT_PARTITION.get(), *also} - {None}
        for partition in partitions:
            self._waiting[partition] += 1
        try:
            yield
        finally:
            for partition in partitions:
                self._waiting[partition] -= 1
                if self._waiting[partition] <= 0:
                    del self._waiting[partition]

    def blocked(self) -> set[Hashable]:
        """Partitions with at least one record waiting."""
        return set(self._waiting)


class ActivityBoard:
    """The activities (``check email_deliverable``) under way now, by partition and start."""

    def __init__(self) -> None:
        self._active: dict[int, tuple[Hashable | None, str, float]] = {}
        self._ids = itertools.count()

    def begin(self, what: str) -> int:
        """Note that ``what`` started (in the current partition); the token ends it (a pair
        of calls, not a context manager: a generator one costs microseconds per check)."""
        token = next(self._ids)
        self._active[token] = (CURRENT_PARTITION.get(), what, time.monotonic())
        return token

    def end(self, token: int) -> None:
        """``what`` of :meth:`begin`'s ``token`` is over."""
        self._active.pop(token, None)

    def oldest(self) -> tuple[Hashable | None, str, float] | None:
        """The longest-running activity: (partition, what, seconds so far), or None."""
        if not self._active:
            return None
        partition, what, since = min(self._active.values(), key=lambda a: a[2])
        return partition, what, time.monotonic() - since
