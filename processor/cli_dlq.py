"""The ``processor dlq`` command: its arguments and its runner (the redrive itself is
:mod:`processor.redrive`, imported only when the command runs: parsing stays light)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processor.config import Settings


def moment(text: str) -> datetime:
    """An ISO 8601 time (``--since``, ``--until``); one without a zone is UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def add_dlq_command(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    dlq = command(
        "dlq", "Send dead letters back to the input topic once their cause is fixed",
        "One pass over the dead-letter topic up to its end: each selected dead letter's key, "
        "value, timestamp and headers (without dlq.*) go back with redrive.count, "
        "redrive.source and redrive.origin headers; one sent back --max-redrives times "
        "already is parked instead. Progress is committed after the broker acknowledges, "
        "so an interrupted redrive resumes where it stopped.",
    )  # fmt: skip
    dlq.add_argument("action", choices=["redrive"], help="send dead letters back")
    dlq.add_argument("--config", type=Path, metavar="FILE", help="the YAML config file")
    add = dlq.add_argument
    add(
        "--reason",
        action="append",
        default=[],
        metavar="GLOB",
        help="only dead letters whose dlq.reason matches (e.g. 'upstream.*'); repeatable",
    )
    add(
        "--since",
        type=moment,
        metavar="TIME",
        help="only those that first failed at or after (ISO 8601, e.g. 2026-12-04T10:00Z)",
    )
    add("--until", type=moment, metavar="TIME", help="... and before")
    add(
        "--partition",
        type=int,
        action="append",
        metavar="N",
        help="only this dead-letter partition; repeatable",
    )
    add("--start-offset", type=int, metavar="N", help="dead-letter offsets from N")
    add("--end-offset", type=int, metavar="N", help="dead-letter offsets up to N (inclusive)")
    add("--key", default=None, help="only records with this key (UTF-8)")
    add("--max", type=int, default=None, metavar="N", help="send at most N records")
    add("--rate", type=float, default=None, metavar="R", help="at most R records/s")
    add("--to", default=None, metavar="TOPIC", help="where to send (default: the input topic)")
    add(
        "--park-topic",
        default=None,
        metavar="TOPIC",
        help="where a record that keeps failing goes (default: <dead-letter topic>.parked)",
    )
    add(
        "--max-redrives",
        type=int,
        default=3,
        metavar="N",
        help="park a dead letter already sent back N times (default 3)",
    )
    add(
        "--group",
        default=None,
        help="the consumer group keeping progress (default: <group_id>.redrive.<selection>)",
    )
    add(
        "--dry-run",
        action="store_true",
        help="print what would be sent, and a count per reason; send and commit nothing",
    )


async def redrive_command(
    settings: Settings, args: argparse.Namespace, say: Callable[[str], None]
) -> int:
    """Run ``processor dlq redrive`` as the arguments say; print its summary; the exit code."""
    from processor.redrive import Options, Selection, redrive

    selection = Selection(
        reasons=tuple(args.reason), since=args.since, until=args.until,
        partitions=frozenset(args.partition) if args.partition else None,
        start_offset=args.start_offset, end_offset=args.end_offset,
        key=None if args.key is None else args.key.encode(),
    )  # fmt: skip
    options = Options(
        selection=selection, to=args.to, park_topic=args.park_topic,
        max_redrives=args.max_redrives, max_records=args.max, rate=args.rate,
        dry_run=args.dry_run, group=args.group,
    )  # fmt: skip
    summary = await redrive(settings, options)
    for line in summary.lines(dry_run=args.dry_run):
        say(line + "\n")
    return 0
