"""``processor run --workers N``: N worker processes in one consumer group, supervised.

Each worker is ``processor run --config FILE --worker-index i`` (one consumer, one event
loop, one core's worth of Python). A worker that exits on its own is restarted after a
backoff that doubles with each quick crash (0.5 s up to 30 s; a worker that ran 60 s is
forgiven). SIGTERM/SIGINT to the supervisor is forwarded to every worker as SIGTERM; each
drains and commits; whoever has not exited after the drain deadline plus a margin is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import structlog

log = structlog.get_logger("processor.supervisor")

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0
STOP_MARGIN_S = 15.0


class Supervisor:
    """Starts, watches, restarts and stops the worker processes."""

    def __init__(self, config: Path | None, workers: int, drain_timeout_s: float) -> None:
        self._config = config
        self._workers = workers
        self._stop_deadline_s = drain_timeout_s + STOP_MARGIN_S
        self._stopping = asyncio.Event()
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0

    def request_stop(self) -> None:
        self._stopping.set()

    def _argv(self, index: int) -> list[str]:
        argv = [sys.executable, "-m", "processor.cli", "run", "--worker-index", str(index)]
        if self._config is not None:
            argv += ["--config", str(self._config)]
        return argv

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*self._argv(index))
        self._procs[index] = proc
        log.info("supervisor.worker_started", worker=index, pid=proc.pid)
        if self._stopping.is_set():  # asked to stop while this one was starting
            proc.send_signal(signal.SIGTERM)
        return proc

    async def _keep_alive(self, index: int) -> None:
        quick_crashes = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            proc = await self._spawn(index)
            code = await proc.wait()
            if self._stopping.is_set():
                return
            ran_s = time.monotonic() - started
            quick_crashes = 0 if ran_s >= HEALTHY_AFTER_S else quick_crashes + 1
            delay = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** max(0, quick_crashes - 1))
            self.restarts += 1
            log.warning("supervisor.worker_exited", worker=index, exit_code=code,
                        ran_s=round(ran_s, 1), restart_in_s=delay)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def run(self) -> int:
        """Run until asked to stop; 0 if every worker then exited cleanly."""
        keepers = [asyncio.create_task(self._keep_alive(i)) for i in range(self._workers)]
        await self._stopping.wait()
        log.info("supervisor.stopping", workers=len(self._procs))
        for proc in self._procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for index, proc in self._procs.items():
            try:
                codes.append(await asyncio.wait_for(proc.wait(), self._stop_deadline_s))
            except TimeoutError:
                log.error("supervisor.worker_killed", worker=index, pid=proc.pid)
                proc.kill()
                codes.append(await proc.wait())
        await asyncio.gather(*keepers, return_exceptions=True)
        log.info("supervisor.stopped", exit_codes=codes, restarts=self.restarts)
        return 0 if all(code == 0 for code in codes) else 1
