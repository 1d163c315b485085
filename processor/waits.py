"""Which partitions have records waiting on something outside (an open circuit breaker).

The engine sets :data:`CURRENT_PARTITION` in each lane task; whatever makes a record wait
(the breaker) wraps the wait in :meth:`WaitBoard.waiting`; the intake pauses every
partition in :meth:`WaitBoard.blocked`. So an upstream outage stops intake exactly where
records wait on it: they stay in Kafka, not in memory, and flow again when it recovers.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Hashable, Iterator
from contextvars import ContextVar

#: The partition of the record the current task works on (None outside a lane).
CURRENT_PARTITION: ContextVar[Hashable | None] = ContextVar("current_partition", default=None)


class WaitBoard:
    """Counts, per partition, the records waiting on an outside condition."""

    def __init__(self) -> None:
        self._waiting: Counter[Hashable] = Counter()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Mark the current task's partition as blocked for the duration of the block."""
        partition = CURRENT_PARTITION.get()
        if partition is None:
            yield
            return
        self._waiting[partition] += 1
        try:
            yield
        finally:
            self._waiting[partition] -= 1
            if self._waiting[partition] <= 0:
                del self._waiting[partition]

    def blocked(self) -> set[Hashable]:
        """Partitions with at least one record waiting."""
        return set(self._waiting)
