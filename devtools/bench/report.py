"""The benchmark's report: one :class:`Result` row per scenario, the machine it ran on, and
the results as a table (terminal and Markdown)."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiokafka
from rich.table import Table

import processor
from devtools.bench.stats import Target
from devtools.local_kafka import POM, kafka_version


@dataclass
class Result:
    """One scenario's row: what was measured, against which bound, and the verdict."""

    scenario: str
    records: int
    records_per_s: float | None = None
    cpu_s_per_1k: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mib: float | None = None
    bound: float | None = None
    bound_is: str = ""
    ratio: float | None = None
    target: str = "-"
    met: bool | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def judge(result: Result, bound: float, bound_is: str, target: Target) -> Result:
    """Set ``result``'s bound, its ratio to it and the verdict against ``target``."""
    result.bound, result.bound_is, result.target = round(bound, 1), bound_is, str(target)
    if result.records_per_s is not None and bound > 0:
        result.ratio = round(result.records_per_s / bound, 3)
    result.met = target.met(result.ratio)
    return result


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())  # fmt: skip
    return {
        "cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
        "kafka": kafka_version(POM), "aiokafka": aiokafka.__version__,
        "processor": processor.__version__, "os": platform.platform(),
    }  # fmt: skip


def table(results: Sequence[Result], title: str) -> Table:
    out = Table(title=title)
    for name in ("scenario", "records/s", "CPU s/1k", "p50 ms", "p99 ms", "peak RSS MiB",
                 "bound", "ratio", "target", "met"):  # fmt: skip
        out.add_column(name, justify="left" if name == "scenario" else "right")

    def num(v: float | None, fmt: str = ",.0f") -> str:
        return "-" if v is None else format(v, fmt)

    for r in results:
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[r.met]
        out.add_row(r.scenario, num(r.records_per_s), num(r.cpu_s_per_1k, ".3f"),
                    num(r.p50_ms, ".1f"), num(r.p99_ms, ".1f"), num(r.peak_rss_mib, ".1f"),
                    f"{num(r.bound)} ({r.bound_is})" if r.bound is not None else "-",
                    num(r.ratio, ".3f"), r.target, met)  # fmt: skip
    return out


def markdown(results: Sequence[Result]) -> str:
    """The table as Markdown, for the README."""
    rows = ["| scenario | records/s | CPU s / 1k | p50 ms | p99 ms | peak RSS MiB | bound | "
            "ratio | target | met |", "|---|--:|--:|--:|--:|--:|---|--:|---|---|"]  # fmt: skip

    def num(v: float | None, fmt: str = ",.0f") -> str:
        return "-" if v is None else format(v, fmt)

    for r in results:
        bound = f"{num(r.bound)} ({r.bound_is})" if r.bound is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        rows.append(f"| {r.scenario} | {num(r.records_per_s)} | {num(r.cpu_s_per_1k, '.3f')} | "
                    f"{num(r.p50_ms, '.1f')} | {num(r.p99_ms, '.1f')} | "
                    f"{num(r.peak_rss_mib, '.1f')} | {bound} | {num(r.ratio, '.3f')} | "
                    f"{r.target} | {met} |")  # fmt: skip
    return "\n".join(rows)
