"""``processor run`` as a subprocess for end-to-end tests: start, stop, reap, read its log.

:func:`cli_processes` (the ``cli`` fixture of ``tests/e2e``) hands out a :class:`CliProcesses`
whose :meth:`~CliProcesses.start` launches ``python -m processor.cli run --config F`` with
its output appended to a log file, and which kills and reaps whatever is still running when
the test ends, passed or failed. The parent closes its copy of each log file at once (the
child keeps its own descriptor), so a failing test leaks no file handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

STOP_TIMEOUT_S = 60.0
KILL_TIMEOUT_S = 10.0


def events(log: Path, name: str) -> list[dict[str, Any]]:
    """Every JSON log line of ``log`` whose ``event`` is ``name``, in order."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            event = json.loads(line)
            if event.get("event") == name:
                found.append(event)
    return found


def tail(*logs: Path, chars: int = 3_000) -> str:
    """The last ``chars`` characters of each log that exists, headed by its name."""
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}"
        for log in logs
        if log.exists()
    )


class CliProcess:
    """One running ``processor run`` and the log it writes to."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (unless it exited) and its exit code; TimeoutError if not in time."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout_s)

    async def kill(self) -> None:
        """SIGKILL, as a crash would, and wait for the exit."""
        if self.proc.returncode is None:
            self.proc.kill()
        await asyncio.wait_for(self.proc.wait(), KILL_TIMEOUT_S)

    def events(self, name: str) -> list[dict[str, Any]]:
        return events(self.log, name)

    def tail(self, chars: int = 3_000) -> str:
        return tail(self.log, chars=chars)


def exited(*procs: CliProcess) -> Callable[[], bool]:
    """A ``give_up`` for waits: True once any of ``procs`` has exited."""
    return lambda: any(p.returncode is not None for p in procs)


class CliProcesses:
    """Starts CLI processes and remembers them, so none outlives the test."""

    def __init__(self) -> None:
        self.started: list[CliProcess] = []

    async def start(
        self, config: Path, log: Path, *args: str, env: Mapping[str, str] | None = None
    ) -> CliProcess:
        """``processor run --config config [args]``, its output appended to ``log``
        (``env``: the child's whole environment, by default this process's)."""
        with log.open("ab") as out:  # the child keeps its own copy of the descriptor
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "processor.cli", "run", "--config", str(config), *args,
                stdout=out, stderr=asyncio.subprocess.STDOUT, env=env,
            )  # fmt: skip
        started = CliProcess(proc, log)
        self.started.append(started)
        return started

    async def reap(self) -> None:
        """Kill whatever is still running (the end of a failed test)."""
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError):
                await proc.kill()


@contextlib.asynccontextmanager
async def cli_processes() -> AsyncIterator[CliProcesses]:
    """A :class:`CliProcesses` whose processes are all reaped when the block ends."""
    procs = CliProcesses()
    try:
        yield procs
    finally:
        await procs.reap()
