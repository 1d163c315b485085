"""CPU time and resident memory of a process and its children, sampled from ``/proc``.

:class:`Sampler` runs in its own thread (so ``/proc`` reads never block the harness's event
loop) and records, every ``interval_s``, the wall-clock time, the CPU seconds (user +
system) and the resident memory of the process tree: with ``--workers`` the supervisor and
its workers, each also on its own (``per_pid``). :func:`machine_busy_seconds` reads the
whole machine's busy CPU seconds, and :func:`neighbours` finds the broker and the simulator
among the harness's own children, so a row can say where the cores went. Linux only, like
the rest of the harness.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from devtools.bench.stats import interpolate

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of one process so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)"; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def memory_mib(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of one process in MiB (0, 0 if it is gone)."""
    rss = hwm = 0.0
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0, 0.0
    for line in lines:
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


class Sampler(threading.Thread):
    """Samples a process tree until :meth:`stop`; results in ``cpu`` and ``peak_rss_mib``.

    ``cpu`` is a list of (time.time(), CPU seconds of the tree). CPU of a child that
    exited is no longer counted, so keep the tree alive until sampling stops.
    """

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        super().__init__(daemon=True, name=f"sampler-{pid}")
        self.pid = pid
        self.interval_s = interval_s
        self.cpu: list[tuple[float, float]] = []
        self.rss: list[tuple[float, float]] = []
        #: The largest sum over the tree of each process's own peak (VmHWM); for a single
        #: process its exact peak, for several an upper bound of their joint peak.
        self.peak_rss_mib = 0.0
        #: CPU seconds of each process of the tree, as last seen.
        self.per_pid: dict[int, float] = {}
        #: The whole machine's busy CPU seconds, sampled alongside.
        self.machine: list[tuple[float, float]] = []
        #: Samplers of the processes sharing the machine (broker, simulator), by name.
        self.others: dict[str, Sampler] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval_s)

    def sample(self) -> None:
        pids = process_tree(self.pid)
        now = time.time()
        spent = 0.0
        for p in pids:  # each process's /proc/<pid>/stat read once
            cpu = cpu_seconds(p)
            self.per_pid[p] = max(self.per_pid.get(p, 0.0), cpu)
            spent += cpu
        self.machine.append((now, machine_busy_seconds()))
        if self.cpu:  # a process that is gone reads as 0: the series never goes back
            spent = max(spent, self.cpu[-1][1])
        self.cpu.append((now, spent))
        memory = [memory_mib(p) for p in pids]
        self.rss.append((now, sum(rss for rss, _ in memory)))
        self.peak_rss_mib = max(self.peak_rss_mib, sum(hwm for _, hwm in memory))

    def stop(self) -> None:
        """Take a last sample and end the thread."""
        self._done.set()
        self.join(5)
        self.sample()


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every core; not idle, not I/O wait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def neighbours(root: int) -> dict[str, int]:
    """The broker (a ``java`` process) and the upstream simulator among ``root``'s
    descendants, by name; whichever is not found is left out."""
    found: dict[str, int] = {}
    for pid in process_tree(root)[1:]:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"java"):
            found.setdefault("broker", pid)
        elif b"devtools.simulator" in cmdline:
            found.setdefault("simulator", pid)
    return found


def cpu_between(sampler: Sampler, start: float, end: float) -> float:
    return interpolate(sampler.cpu, end) - interpolate(sampler.cpu, start)


def cores_used(sampler: Sampler, start: float, end: float) -> dict[str, float]:
    """Cores in use between ``start`` and ``end``: the whole machine's, the system under
    test's, and each neighbour's (the broker and the simulator share the machine)."""
    if end <= start or not sampler.machine:
        return {}
    span = end - start
    used = {
        "cores_machine": interpolate(sampler.machine, end) - interpolate(sampler.machine, start),
        "cores_tested": cpu_between(sampler, start, end),
        **{f"cores_{name}": cpu_between(other, start, end)
           for name, other in sampler.others.items() if other.cpu},
    }  # fmt: skip
    return {name: round(seconds / span, 2) for name, seconds in used.items()}


def where_cores(extra: dict[str, Any]) -> str:
    """Where the machine's cores went, in words, from a row's ``extra`` (:func:`cores_used`)."""
    if "cores_machine" not in extra:
        return ""
    parts = [f"{name.removeprefix('cores_')} {extra[name]:.2f}" for name in extra
             if name.startswith("cores_") and name != "cores_machine"]  # fmt: skip
    workers = extra.get("worker_cpu_s")
    if workers:
        parts.append("CPU s per worker " + "/".join(f"{w:.1f}" for w in workers))
    return f"{extra['cores_machine']:.2f} of {os.cpu_count()} cores busy (" + ", ".join(parts) + ")"
