"""The batched-check rows of ``make bench``: the e-mail check through its batch endpoint.

``upstream-bound-batched`` is upstream-bound (the simulator at a fixed 20 ms, no limit) with
the e-mail check's ``batch`` section on; ``rate-limited-batched`` is rate-limited (the
simulator enforcing 500 requests/s, the processor limiting itself to 500/s) with it on. The
comparison row divides the batched records/s by the unbatched ``rate-limited`` records/s of
the same run: issue 15 asks for at least 20x, with no 429. Both run on the upstream-bound
backlog size (at 500 records/s the rate-limited one is small; batched, it would be over in
a fraction of a second).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from devtools.bench.report import Result
from devtools.bench.stats import Target, steady_window
from devtools.corpus import CorpusRecord
from devtools.simulator.verdicts import EMAIL_PATH
from devtools.stack import save_config
from processor.config import TopicsConfig

BATCH_PATH = EMAIL_PATH + "/batch"
#: The simulator's default cap (``batch_max_items``), and a wait that costs little latency.
BATCH = {"path": BATCH_PATH, "match": "key", "item_key": "email", "status_field": "status",
         "max_items": 100, "max_wait_ms": 5}  # fmt: skip
BATCHED_TARGET = Target(low=20.0)


class Bench(Protocol):
    """What these rows need of :class:`devtools.bench.run.Bench` (which imports this module)."""

    async def simulator_set(self, **settings: Any) -> None: ...
    async def simulator_requests(self, path: str) -> list[tuple[float, Any]]: ...
    def processor_cmd(self, config: Path, workers: int = 1) -> list[str]: ...

    def config(
        self, name: str, topics: TopicsConfig, *, checks: bool,
        rate_limit_rps: float | None = None, rss_budget_mib: int | None = None,
        delivery: str = "at_least_once",
    ) -> Path: ...  # fmt: skip

    async def backlog_run(
        self, name: str, count: int, cmd: Callable[[TopicsConfig], list[str]],
        corpus: Sequence[CorpusRecord], exactly_once: bool = False,
    ) -> Result: ...  # fmt: skip


def with_batch(config: Path) -> Path:
    """The config at ``config`` with the e-mail check's batch endpoint on (rewritten in place)."""
    data: dict[str, Any] = yaml.safe_load(config.read_text())
    for checks in data["checks"].values():
        for check in checks:
            if check["upstream"] == "email":
                check["batch"] = BATCH
    return save_config(config, data)


async def upstream_bound_batched(
    bench: Bench, count: int, corpus: Sequence[CorpusRecord], latency_ms: float,
    say: Callable[[str], None],
) -> Result:  # fmt: skip
    """The upstream-bound backlog with the e-mail check batched (the caller judges it)."""
    name = "upstream-bound-batched"
    say(f"[bold]{name}[/]: upstream-bound ({latency_ms:g} ms), the e-mail check batched")
    await bench.simulator_set(latency_ms=latency_ms, latency_distribution="fixed",
                              rate_limit_rps=0)  # fmt: skip
    result = await bench.backlog_run(
        name, count,
        lambda t: bench.processor_cmd(with_batch(bench.config(name, t, checks=True))), corpus,
    )  # fmt: skip
    await _requests(bench, result)
    return result


async def rate_limited_batched(
    bench: Bench, count: int, corpus: Sequence[CorpusRecord], rate_limit_rps: float,
    unbatched: Result | None, say: Callable[[str], None],
) -> list[Result]:  # fmt: skip
    """The rate-limited setting with the e-mail check batched, and its ratio to unbatched."""
    name = "rate-limited-batched"
    say(f"[bold]{name}[/]: upstream limit {rate_limit_rps:g} requests/s, the e-mail check batched")
    await bench.simulator_set(latency_ms=5, latency_distribution="fixed",
                              rate_limit_rps=rate_limit_rps, rate_limit_burst=20)  # fmt: skip
    result = await bench.backlog_run(
        name, count,
        lambda t: bench.processor_cmd(with_batch(
            bench.config(name, t, checks=True, rate_limit_rps=rate_limit_rps))),
        corpus,
    )  # fmt: skip
    too_many = await _requests(bench, result)
    await bench.simulator_set(rate_limit_rps=0)
    result.bound, result.bound_is = rate_limit_rps, "requests/s (the limit)"
    result.target = "no 429"
    result.met = too_many == 0
    base = unbatched.records_per_s if unbatched and unbatched.records_per_s else None
    bound_is = "rate-limited records/s" if base else "the limit (rate-limited not run)"
    base = base or rate_limit_rps
    ratio = round((result.records_per_s or 0) / base, 2)
    met = bool(BATCHED_TARGET.met(ratio)) and too_many == 0
    comparison = Result(
        scenario="rate-limited-batched vs rate-limited", records=0,
        records_per_s=result.records_per_s, bound=round(base, 1), bound_is=bound_is,
        ratio=ratio, target=f"{BATCHED_TARGET}, no 429", met=met,
        notes=f"{ratio:.1f}x, {too_many} answered 429; {result.extra['requests_per_s']:g} of "
              f"{rate_limit_rps:g} requests/s used",
    )  # fmt: skip
    return [result, comparison]


async def _requests(bench: Bench, result: Result) -> int:
    """Note the batch requests the simulator saw during ``result``'s run; return the 429s."""
    requests = await bench.simulator_requests(BATCH_PATH)
    answered = sorted(t for t, status in requests if status == 200)
    too_many = sum(1 for _, status in requests if status == 429)
    rate = steady_window(answered).rate if len(answered) >= 10 else 0.0
    outcomes = result.extra.get("outcomes", 0)
    result.extra.update(batch_requests=len(requests), answered_429=too_many,
                        requests_per_s=round(rate, 1),
                        items_per_request=round(outcomes / max(1, len(answered)), 1))  # fmt: skip
    note = f"{len(requests):,} batch requests ({rate:.0f}/s), {too_many} answered 429"
    result.notes = f"{result.notes}; {note}" if result.notes else note
    return too_many
