"""The peer contestants in ``make bench``: the schema-only job in Quix Streams and FastStream.

Each peer runs as its own process on its own copy of the schema-only backlog, measured by
the same code as the processor (:meth:`Bench.backlog_run`: steady-state records/s, CPU from
``/proc``), and two rows compare: schema-only against the best peer (issue 15: at least
1.5x) and against the aiokafka copy loop (at least 0.5x). The jobs are
``devtools.bench.peer_quix`` and ``devtools.bench.peer_faststream``; what they do is
:mod:`devtools.bench.peer_job`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from devtools.bench.report import Result
from devtools.bench.stats import Target
from devtools.corpus import CorpusRecord
from devtools.local_kafka import REPO_ROOT
from processor.config import TopicsConfig

#: Quix Streams needs its own virtualenv (its pydantic cap is below the project's pin).
QUIX_PYTHON = REPO_ROOT / ".venv-quix" / "bin" / "python"
FASTSTREAM_BATCH = 2_000  # records per handler call, as in issue 15's comparison
PEERS: dict[str, tuple[str, str]] = {  # scenario: (module, what it is)
    "peer-quix": ("devtools.bench.peer_quix", "Quix Streams 3.28 application"),
    "peer-faststream": ("devtools.bench.peer_faststream",
                        f"FastStream 0.7 batch subscriber of {FASTSTREAM_BATCH:,}"),
}  # fmt: skip
PEER_TARGET = Target(low=1.5)
COPY_LOOP_TARGET = Target(low=0.5)


class Bench(Protocol):
    """What the peers need of :class:`devtools.bench.run.Bench` (which imports this module)."""

    bootstrap: str
    run_id: str

    async def backlog_run(
        self, name: str, count: int, cmd: Callable[[TopicsConfig], list[str]],
        corpus: Sequence[CorpusRecord], exactly_once: bool = False,
    ) -> Result: ...  # fmt: skip


def peer_cmd(bench: Bench, name: str, topics: TopicsConfig) -> list[str]:
    """The command line of one peer contestant, reading ``topics.input``."""
    module = PEERS[name][0]
    python = str(QUIX_PYTHON) if name == "peer-quix" else sys.executable
    cmd = [python, "-m", module, "--bootstrap", bench.bootstrap, "--input", topics.input,
           "--valid", topics.valid, "--invalid", topics.invalid,
           "--dead-letter", topics.dead_letter,
           "--group", f"bench-{bench.run_id}-{name}"]  # fmt: skip
    if name == "peer-faststream":
        cmd += ["--batch", str(FASTSTREAM_BATCH)]
    return cmd


async def peer_runs(
    bench: Bench, count: int, corpus: Sequence[CorpusRecord], wanted: Callable[[str], bool],
    say: Callable[[str], None],
) -> list[Result]:  # fmt: skip
    """Run each wanted peer on a ``count``-record backlog, as the schema-only scenario is run."""
    results = []
    for name, (_, what) in PEERS.items():
        if not wanted(name):
            continue
        say(f"[bold]{name}[/]: the schema-only job as a {what}")
        result = await bench.backlog_run(name, count, partial(peer_cmd, bench, name), corpus)
        result.notes = result.notes or what
        results.append(result)
    return results


def comparisons(
    schema_only: Result | None, passthrough: Result | None, peers: Sequence[Result]
) -> list[Result]:
    """The rows that judge schema-only against the best peer and against the copy loop."""
    rate = schema_only.records_per_s if schema_only else None
    if not rate:
        return []
    rows = []
    best = max(peers, key=lambda r: r.records_per_s or 0, default=None)
    if best is not None and best.records_per_s:
        rows.append(_ratio("schema-only vs best peer", rate, best.records_per_s,
                           f"{best.scenario} records/s", PEER_TARGET))  # fmt: skip
    if passthrough is not None and passthrough.records_per_s:
        rows.append(_ratio("schema-only vs copy loop", rate, passthrough.records_per_s,
                           "passthrough records/s", COPY_LOOP_TARGET))  # fmt: skip
    return rows


def _ratio(name: str, rate: float, bound: float, bound_is: str, target: Target) -> Result:
    ratio = round(rate / bound, 3)
    return Result(scenario=name, records=0, records_per_s=rate, bound=round(bound, 1),
                  bound_is=bound_is, ratio=ratio, target=str(target), met=target.met(ratio),
                  notes=f"{ratio:.2f}x")  # fmt: skip
