"""Dead-letter redrive: send dead letters back to the input topic once their cause is fixed.

``processor dlq redrive`` makes one pass over the dead-letter topic, up to the end offsets it
saw when it started, and for each dead letter the :class:`Selection` matches:

- sends the original record back (its key, value and timestamp; its headers without the
  ``dlq.*`` ones) to the input topic, or ``--to``, with ``redrive.count`` (how many times it
  was sent back, this time included), ``redrive.source`` (the dead letter's coordinates) and
  ``redrive.origin`` (the first input's coordinates, kept across rounds). A record that fails
  again is dead-lettered again with those headers kept, so the count grows;
- parks it instead, in ``<dead-letter topic>.parked`` (or ``--park-topic``), once it was sent
  back ``--max-redrives`` times already: the dead letter as it is, plus ``redrive.parked``,
  so a record that keeps failing stops going round;
- leaves a dead letter whose value was left out (``dlq.value.omitted``: it did not fit)
  where it is and counts it: its ``dlq.original.*`` headers say where the record still is.

Progress is committed (in a consumer group of its own per selection) only after the broker
acknowledged every record sent for it, so an interrupted redrive resumes where it stopped,
at worst sending again what it sent last (at-least-once). ``--dry-run`` sends and commits
nothing and prints what it would do.
"""

from __future__ import annotations

import asyncio
import enum
import fnmatch
import hashlib
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from processor.config import Settings
from processor.inputs import InputRecord
from processor.kafka import RecordSender, TopicReader

COUNT = "redrive.count"
SOURCE = "redrive.source"
ORIGIN = "redrive.origin"
PARKED = "redrive.parked"
OWN_HEADERS = (COUNT, SOURCE, ORIGIN)
BATCH_RECORDS = 500
FETCH_IDLE_TIMEOUT_S = 30.0
PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class Selection:
    """Which dead letters a redrive takes. Every given filter must match."""

    reasons: tuple[str, ...] = ()  #: ``dlq.reason`` globs (``upstream.*``); any may match
    since: datetime | None = None  #: ``dlq.first.failure.time`` at or after
    until: datetime | None = None  #: ``dlq.first.failure.time`` before
    partitions: frozenset[int] | None = None  #: of the dead-letter topic
    start_offset: int | None = None  #: dead-letter offsets from (inclusive)
    end_offset: int | None = None  #: dead-letter offsets up to (inclusive)
    key: bytes | None = None  #: exactly this record key

    def matches(self, record: InputRecord) -> bool:
        headers = first_values(record.headers)
        if self.reasons:
            reason = headers.get("dlq.reason", b"").decode("utf-8", "replace")
            if not any(fnmatch.fnmatchcase(reason, pattern) for pattern in self.reasons):
                return False
        if self.since is not None or self.until is not None:
            failed = _failure_time(headers)
            if failed is None:
                return False
            if (self.since is not None and failed < self.since) or (
                self.until is not None and failed >= self.until
            ):
                return False
        if self.start_offset is not None and record.offset < self.start_offset:
            return False
        if self.end_offset is not None and record.offset > self.end_offset:
            return False
        return self.key is None or record.key == self.key

    def fingerprint(self) -> str:
        """A short name for this selection: each selection keeps its own progress."""
        parts = (sorted(self.reasons), self.since, self.until, sorted(self.partitions or ()),
                 self.start_offset, self.end_offset, self.key)  # fmt: skip
        text = repr(parts)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def first_values(headers: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
    """Each header's first value (Kafka allows repeats; ``dlq.*`` headers are written once)."""
    found: dict[str, bytes] = {}
    for key, value in headers:
        found.setdefault(key, value or b"")
    return found


def _failure_time(headers: dict[str, bytes]) -> datetime | None:
    try:
        return datetime.fromisoformat(headers["dlq.first.failure.time"].decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


def _int(value: bytes | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class Action(enum.Enum):
    SEND = "send"
    PARK = "park"
    UNRECOVERABLE = "value-omitted"


@dataclass(frozen=True)
class Step:
    """What to do with one dead letter, and the record to send for it."""

    action: Action
    reason: str
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int


def plan(record: InputRecord, *, to: str, park: str, max_redrives: int) -> Step:
    """The step for one dead letter (pure: no I/O)."""
    headers = first_values(record.headers)
    reason = headers.get("dlq.reason", b"unknown").decode("utf-8", "replace")
    timestamp = _int(headers.get("dlq.original.timestamp")) or record.timestamp
    if "dlq.value.omitted" in headers:
        return Step(Action.UNRECOVERABLE, reason, "", None, None, [], timestamp)
    count = _int(headers.get(COUNT)) or 0
    if count >= max_redrives:
        parked = [*record.headers, (PARKED, f"sent back {count} times".encode())]
        return Step(Action.PARK, reason, park, record.key, record.value, parked, timestamp)
    here = f"{record.topic}/{record.partition}/{record.offset}".encode()
    origin = headers.get(ORIGIN) or b"/".join(
        headers.get(f"dlq.original.{part}", b"?") for part in ("topic", "partition", "offset")
    )
    kept = [(k, v) for k, v in record.headers if not k.startswith("dlq.") and k not in OWN_HEADERS]
    added = [(COUNT, str(count + 1).encode()), (SOURCE, here), (ORIGIN, origin)]
    return Step(Action.SEND, reason, to, record.key, record.value, kept + added, timestamp)


@dataclass(frozen=True)
class Options:
    """A redrive as the command line asked for it."""

    selection: Selection = Selection()
    to: str | None = None  #: default: the input topic
    park_topic: str | None = None  #: default: ``<dead-letter topic>.parked``
    max_redrives: int = 3
    max_records: int | None = None  #: send (or park) at most this many
    rate: float | None = None  #: records/s
    dry_run: bool = False
    group: str | None = None  #: default: ``<group_id>.redrive.<selection fingerprint>``


@dataclass
class Summary:
    """What a redrive did, by dead-letter reason."""

    read: int = 0
    passed_over: int = 0
    by_reason: dict[Action, Counter[str]] = field(
        default_factory=lambda: {action: Counter() for action in Action}
    )

    def count(self, action: Action) -> int:
        return sum(self.by_reason[action].values())

    def lines(self, *, dry_run: bool) -> list[str]:
        verb = {Action.SEND: "would send back" if dry_run else "sent back",
                Action.PARK: "would park" if dry_run else "parked",
                Action.UNRECOVERABLE: "left (value omitted)"}  # fmt: skip
        out = [f"read {self.read} dead letters, {self.passed_over} not selected"]
        for action in Action:
            counts = self.by_reason[action]
            if counts:
                detail = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
                out.append(f"{verb[action]} {sum(counts.values())}: {detail}")
        return out


class Pacer:
    """At most ``rate`` sends a second (None: no cap)."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(self._next, now) + self._interval


class Progress:
    """A progress line on stderr: redrawn in place on a terminal, once a second otherwise."""

    def __init__(self, total: int, out: TextIO = sys.stderr) -> None:
        self._total, self._out = total, out
        self._tty = out.isatty()
        self._started = self._shown = time.monotonic()

    def show(self, summary: Summary, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._shown < PROGRESS_EVERY_S:
            return
        self._shown = now
        done = summary.read
        width = 30
        filled = width * done // self._total if self._total else width
        rate = done / max(now - self._started, 1e-9)
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self._total} read, "
                f"{summary.count(Action.SEND)} sent, {summary.count(Action.PARK)} parked, "
                f"{rate:,.0f}/s")  # fmt: skip
        if self._tty:
            self._out.write("\r" + line + ("\n" if final else ""))
        else:
            self._out.write(line + "\n")
        self._out.flush()


async def redrive(
    settings: Settings, options: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> Summary:
    """One redrive pass over the dead-letter topic (see the module docstring).

    Raises:
        KafkaUnavailable: The broker could not be reached, a topic does not exist, or a
            record sent was not acknowledged (progress up to the last acknowledged batch is
            committed).
        CommitFailed: The progress could not be committed.
    """
    topics = settings.kafka.topics
    to = options.to or topics.input
    park = options.park_topic or f"{topics.dead_letter}.parked"
    group = options.group or (
        f"{settings.kafka.group_id}.redrive.{options.selection.fingerprint()}"
    )
    reader = await TopicReader.open(
        settings.kafka, topics.dead_letter, group, options.selection.partitions, (to, park)
    )
    sender = None if options.dry_run else RecordSender(settings.kafka)
    summary = Summary()
    try:
        if sender is not None:
            await sender.start()
        if options.selection.start_offset is not None:
            await reader.seek(options.selection.start_offset)
        progress = Progress(await reader.remaining(), err)
        await _pass(reader, sender, options, to, park, summary, out, progress)
        progress.show(summary, final=True)
    finally:
        if sender is not None:
            await sender.stop()
        await reader.close()
    return summary


async def _pass(
    reader: TopicReader,
    sender: RecordSender | None,
    options: Options,
    to: str,
    park: str,
    summary: Summary,
    out: TextIO,
    progress: Progress,
) -> None:
    pacer = Pacer(options.rate)
    handled = 0
    async for batch in reader.batches(BATCH_RECORDS, FETCH_IDLE_TIMEOUT_S):
        pending: list[asyncio.Future[Any]] = []
        done: dict[tuple[str, int], int] = {}
        full = False
        for record in batch:
            if options.max_records is not None and handled >= options.max_records:
                full = True
                break
            done[(record.topic, record.partition)] = record.offset + 1
            summary.read += 1
            if not options.selection.matches(record):
                summary.passed_over += 1
                continue
            step = plan(record, to=to, park=park, max_redrives=options.max_redrives)
            summary.by_reason[step.action][step.reason] += 1
            if step.action is Action.UNRECOVERABLE:
                continue
            handled += 1
            if sender is None:
                key = (record.key or b"").decode("utf-8", "backslashreplace")
                out.write(f"{record.partition}/{record.offset} {step.reason} key={key!r} "
                          f"-> {step.action.value} {step.topic}\n")  # fmt: skip
                continue
            await pacer.wait()
            pending.append(
                await sender.producer.send(
                    step.topic,
                    value=step.value,
                    key=step.key,
                    timestamp_ms=step.timestamp_ms,
                    headers=step.headers,
                )
            )
        if sender is not None:
            await sender.acknowledged(pending)
            if done:
                await reader.commit(done)
        progress.show(summary)
        if full:
            return
