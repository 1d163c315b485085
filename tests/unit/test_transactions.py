"""Exactly-once commits over a real engine and fake transactions: each partition commits its
cut once the records below it finished; a failed commit is fatal, a fenced one loses the
partition, and a final commit leaves an undrained partition uncommitted."""

from __future__ import annotations

from collections.abc import Iterable

from processor.engine import TP
from processor.errors import CommitFailed, PartitionFenced
from processor.metrics import Metrics
from processor.transactions import TransactionalCommits
from tests.unit.test_engine import P0, P1, MakeRig, Rig, _record
from tests.unit.test_engine import make_rig as make_rig  # the engine rig fixture, shared


class FakeTransactions:
    """Records commits; fails a partition's commit with the error set for it."""

    def __init__(self) -> None:
        self.commits: list[tuple[TP, int]] = []
        self.errors: dict[TP, Exception] = {}
        self.opened: list[TP] = []
        self.closed: list[TP] = []

    async def open(self, partitions: Iterable[TP]) -> None:
        self.opened += partitions

    async def commit(self, tp: TP, offset: int) -> None:
        if tp in self.errors:
            raise self.errors[tp]
        self.commits.append((tp, offset))

    async def close(self, partitions: Iterable[TP]) -> None:
        self.closed += partitions


class FakeConsumer:
    def __init__(self) -> None:
        self.rewound: list[TP] = []

    async def rewind(self, partitions: Iterable[TP]) -> None:
        self.rewound += partitions


def _commits(
    rig: Rig, txns: FakeTransactions, settle_timeout_s: float = 2.0
) -> TransactionalCommits:
    return TransactionalCommits(
        engine=rig.engine, transactions=txns, consumer=FakeConsumer(),
        settle_timeout_s=settle_timeout_s, metrics=Metrics(),
    )  # fmt: skip


async def _finish(rig: Rig, *coords: tuple[int, int]) -> None:
    for _ in coords:
        await rig.publisher.next_published()
    for coord in coords:
        await rig.ack(coord)


async def test_each_partition_commits_its_cut_once_everything_below_it_finished(
    make_rig: MakeRig,
) -> None:
    """A commit waits for the records taken before it, commits one past the last taken
    offset per partition, and marks it committed; a partition with nothing new is skipped."""
    rig, txns = make_rig(), FakeTransactions()
    commits = _commits(rig, txns)
    rig.submit(_record(0, 0, b"a"), _record(0, 1, b"b"), _record(1, 0, b"a"))
    await _finish(rig, (0, 0), (0, 1), (1, 0))
    assert await commits.commit(final=False)
    assert sorted(txns.commits) == [(P0, 2), (P1, 1)]
    assert rig.engine.committed() == {P0: 2, P1: 1}
    assert await commits.commit(final=False)
    assert len(txns.commits) == 2


async def test_a_transaction_that_fails_to_commit_is_fatal_and_not_marked_committed(
    make_rig: MakeRig,
) -> None:
    """A commit refused by the broker stops the process (the restart redoes it) and leaves
    the partition's committed offset where it was."""
    rig, txns = make_rig(), FakeTransactions()
    txns.errors[P0] = CommitFailed("coordinator gone")
    rig.submit(_record(0, 0))
    await _finish(rig, (0, 0))
    assert not await _commits(rig, txns).commit(final=False)
    assert isinstance(rig.engine.fatal, CommitFailed)
    assert rig.engine.committed() == {P0: None, P1: None}


async def test_a_fenced_commit_loses_the_partition_without_stopping_the_process(
    make_rig: MakeRig,
) -> None:
    """A commit that finds our producer fenced drops the partition, not the process."""
    rig, txns = make_rig(), FakeTransactions()
    txns.errors[P0] = PartitionFenced("fenced")
    rig.submit(_record(0, 0), _record(1, 0))
    await _finish(rig, (0, 0), (1, 0))
    assert not await _commits(rig, txns).commit(final=False)
    assert rig.engine.fatal is None
    assert rig.engine.assigned == [P1]
    assert txns.commits == [(P1, 1)]


async def test_a_partition_that_does_not_settle_is_fatal_on_a_periodic_commit_only(
    make_rig: MakeRig,
) -> None:
    """A record below the cut that does not finish in time leaves the partition uncommitted:
    on a final commit (revoke, shutdown) that is all; on a periodic one it is fatal."""
    rig, txns = make_rig(), FakeTransactions()
    rig.pipeline.hold((0, 0))
    rig.submit(_record(0, 0))
    assert not await _commits(rig, txns, settle_timeout_s=0.05).commit(final=True)
    assert rig.engine.fatal is None
    assert not await _commits(rig, txns, settle_timeout_s=0.05).commit(final=False)
    assert isinstance(rig.engine.fatal, CommitFailed)
    assert txns.commits == []


async def test_an_assignment_opens_the_producers_before_rewinding_the_consumer(
    make_rig: MakeRig,
) -> None:
    """Assigned partitions get their producers (fencing the previous owner) and are then
    read again from their committed offsets."""
    rig, txns = make_rig(), FakeTransactions()
    consumer = FakeConsumer()
    commits = TransactionalCommits(
        engine=rig.engine, transactions=txns, consumer=consumer, settle_timeout_s=1.0,
        metrics=Metrics(),
    )  # fmt: skip
    await commits.assigned({P0})
    assert (txns.opened, consumer.rewound) == ([P0], [P0])
    await commits.revoked({P0})
    assert txns.closed == [P0]
