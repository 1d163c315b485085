"""Logging, configured in one place: structlog JSON lines (readable console on a terminal).

Per-record lines carry coordinates (topic, partition, offset, record id), never payloads.
Standard-library loggers (aiokafka, aiohttp) go through the same renderer at WARNING, with
their logger's name. aiokafka repeats itself while the broker is down (a connection error and
a metadata error every retry backoff, per client: 3,718 lines in 54 s were seen), so
:class:`RepeatFilter` lets the first line of each kind through and then one a minute, which
says how many it held back (``repeats``); the processor's own ``kafka.unreachable`` and
``kafka.reachable`` events tell the story.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}  # fmt: skip


#: One line of each kind per this many seconds from a rate-limited library.
REPEAT_WINDOW_S = 60.0
#: Kinds of line remembered (the oldest is forgotten first).
REPEAT_KINDS = 256
RATE_LIMITED_LOGGERS = ("aiokafka",)


class RepeatFilter(logging.Filter):
    """Lets through one line of each kind (logger, level, message template) per ``window_s``
    from the loggers named in ``prefixes``; the next one through carries ``repeats``, the
    count held back in between. Lines of other loggers pass untouched."""

    def __init__(
        self,
        prefixes: tuple[str, ...] = RATE_LIMITED_LOGGERS,
        window_s: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._window_s = window_s
        self._clock = clock
        self._seen: OrderedDict[tuple[str, int, str], tuple[float, int]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if not any(name == p or name.startswith(p + ".") for p in self._prefixes):
            return True
        kind = (name, record.levelno, str(record.msg))
        now = self._clock()
        last = self._seen.get(kind)
        if last is not None and now - last[0] < self._window_s:
            self._seen[kind] = (last[0], last[1] + 1)
            return False
        self._seen[kind] = (now, 0)
        self._seen.move_to_end(kind)
        while len(self._seen) > REPEAT_KINDS:
            self._seen.popitem(last=False)
        if last is not None and last[1]:
            record.repeats = last[1]
        return True


def configure_logging(
    level: Literal["debug", "info", "warning", "error"] = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the standard library once, at start-up."""
    out = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    foreign: list[structlog.types.Processor] = [
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(allow=["repeats"]),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*foreign, *shared], processor=renderer
        )
    )
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
