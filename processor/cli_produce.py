"""``processor produce``: lines from stdin as records, keyed by a field of each line.

stdin is read by a daemon thread (a blocked read must not keep the process from exiting on
Ctrl-C), a bounded number of lines ahead of the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the service's modules load after the early SIGTERM handler (see cli.main)
    from processor.config import Settings

#: Lines ``produce`` reads ahead of the producer.
READ_AHEAD_LINES = 1_000


def key_for(field: str | None) -> Callable[[bytes], bytes | None]:
    """The key of a line: the value at ``field`` (dotted, ``$.`` optional) if it parses."""
    path = field.removeprefix("$.").split(".") if field else []

    def key(line: bytes) -> bytes | None:
        if not path:
            return None
        try:
            value = json.loads(line)
        except ValueError:
            return None
        for part in path:
            if not isinstance(value, dict) or value.get(part) is None:
                return None
            value = value[part]
        return (value if isinstance(value, str) else json.dumps(value)).encode()

    return key


async def _lines(fd: int) -> AsyncIterator[bytes]:
    """The non-blank lines read from ``fd``, without their line ends.

    A daemon thread reads, so a read blocked on a terminal or a pipe does not keep the
    process from exiting (on Ctrl-C). It reads the raw descriptor: ``sys.stdin.buffer``
    would hold its lock while blocked, and the interpreter aborts at exit on that lock.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    room = threading.Semaphore(READ_AHEAD_LINES)

    def emit(line: bytes) -> None:
        if line.strip():
            room.acquire()
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip(b"\r"))

    def read() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody reads any more
            try:
                rest = b""
                while chunk := os.read(fd, 65_536):
                    *complete, rest = (rest + chunk).split(b"\n")
                    for line in complete:
                        emit(line)
                emit(rest)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        room.release()
        yield line


async def produce_command(
    settings: Settings, topic: str | None, key_field: str | None, say: Callable[[str], None]
) -> int:
    """Send each non-blank stdin line as a record to ``topic`` (the input topic by default)."""
    from processor.kafka import produce_lines

    target = topic or settings.kafka.topics.input
    count = await produce_lines(
        settings.kafka, target, _lines(sys.stdin.fileno()), key_for(key_field)
    )
    say(f"produced {count} records to {target}")
    return 0
