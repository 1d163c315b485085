"""Per-partition offset bookkeeping: which records are in flight, and what is safe to commit.

Records finish out of order. The committable offset of a partition is one past the
highest offset below which *every* taken record is finished (the contiguous watermark),
never "highest seen". Offsets are tracked in the order they were taken, so gaps in the
log (compaction, transaction markers) do not stall the watermark.
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """Offsets taken from one partition and not yet committed."""

    __slots__ = ("_done", "_last_taken", "_pending", "committable", "committed", "lost")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._last_taken: int | None = None
        #: One past the last offset of the finished prefix; None until something finishes.
        self.committable: int | None = None
        #: The offset last committed by this process (set by ``Engine.mark_committed``).
        self.committed: int | None = None
        #: Exactly-once: the partition was lost (fenced); its failed acks are expected.
        self.lost = False

    @property
    def in_flight(self) -> int:
        """Records taken and not yet finished."""
        return len(self._pending) - len(self._done)

    def take(self, offset: int) -> None:
        """Record that ``offset`` was taken for processing (offsets must increase)."""
        if self._last_taken is not None and offset <= self._last_taken:
            raise ValueError(f"offset {offset} taken after {self._last_taken}")
        self._last_taken = offset
        self._pending.append(offset)

    def finish(self, offset: int) -> None:
        """Record that ``offset``'s outcome was acknowledged; advance the watermark."""
        self._done.add(offset)
        while self._pending and self._pending[0] in self._done:
            first = self._pending.popleft()
            self._done.discard(first)
            self.committable = first + 1

    def first_pending(self) -> int | None:
        """The lowest offset taken and not finished (what holds the watermark back)."""
        for offset in self._pending:
            if offset not in self._done:
                return offset
        return None

    def next_to_take(self) -> int | None:
        """One past the last offset taken, or None if nothing was taken since the last commit
        (exactly-once: the offset a partition's transaction commits once all is finished)."""
        if self._last_taken is None or self._last_taken + 1 == self.committed:
            return None
        return self._last_taken + 1

    def finished_below(self, offset: int) -> bool:
        """True when every record taken below ``offset`` is finished."""
        return not self._pending or self._pending[0] >= offset

    def to_commit(self) -> int | None:
        """The offset to commit now, or None if nothing new finished since the last commit."""
        if self.committable is None or self.committable == self.committed:
            return None
        return self.committable
