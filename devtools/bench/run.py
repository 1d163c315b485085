"""``make bench``: throughput, latency and memory of the processor against the limits of its stack.

Starts a local broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``) and the upstream simulator,
then measures each scenario side by side in one run, every system under test in its own
process, sampled from ``/proc`` (see ``docs/benchmarks.md`` for what each scenario means
and why it is measured that way). The command line is :mod:`devtools.bench.cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console

from devtools.bench.api_load import api_row
from devtools.bench.batched import rate_limited_batched, upstream_bound_batched
from devtools.bench.kafka_io import (
    CommittedCounter,
    OutcomeCounter,
    create_topics,
    produce_backlog,
    produce_paced,
    read_outcomes,
    stable_members,
)
from devtools.bench.peers import comparisons, peer_runs
from devtools.bench.procs import Sampler, cores_used, cpu_between, neighbours, where_cores
from devtools.bench.report import Result, judge
from devtools.bench.stats import (
    Target,
    cpu_per_1k,
    percentile,
    steady_window,
    upstream_bound,
)
from devtools.corpus import CorpusRecord, bench_records, build_corpus
from devtools.local_kafka import REPO_ROOT
from devtools.stack import RUN_DIR, config_data, save_config, topics_named
from processor.config import TopicsConfig

RESULTS_DIR = REPO_ROOT / "bench" / "results"
PARTITIONS = 6
UPSTREAM_LATENCY_MS = 20.0
CONCURRENCY = 256
RATE_LIMIT_RPS = 500.0
RSS_BUDGET_MIB = 256
EMAIL_PATH = "/v1/email/verify"
console = Console(width=160)


@dataclass(frozen=True)
class Sizes:
    """Records (or seconds) per scenario; ``--quick`` divides them for a smoke run."""

    passthrough: int = 150_000
    schema_only: int = 40_000
    exactly_once: int = 40_000
    upstream_bound: int = 40_000
    rate_limited: int = 12_500
    latency_s: float = 20.0
    scale: int = 100_000
    memory: int = 1_000_000
    memory_s: float = 30.0
    api: int = 10_000

    def scaled(self, factor: float) -> Sizes:
        return Sizes(*(type(v)(v * factor) for v in asdict(self).values()))


@dataclass
class Bench:
    """One benchmark run: the broker, the simulator, and where its files go."""

    bootstrap: str
    simulator: str
    run_id: str
    profile: str = ""
    work: Path = field(init=False)

    def __post_init__(self) -> None:
        self.work = RUN_DIR / "bench" / self.run_id
        self.work.mkdir(parents=True, exist_ok=True)

    def topics(self, name: str) -> TopicsConfig:
        return topics_named(f"bench-{self.run_id}-{name}")

    def config(
        self, name: str, topics: TopicsConfig, *, checks: bool,
        rate_limit_rps: float | None = None, rss_budget_mib: int | None = None,
        delivery: str = "at_least_once",
    ) -> Path:  # fmt: skip
        """The processor's config: the shipped example, pointed at this run."""
        engine: dict[str, Any] = {"max_concurrency": CONCURRENCY}
        if rss_budget_mib is not None:
            engine["max_rss_mib"] = rss_budget_mib
        email: dict[str, Any] = {"max_concurrency": CONCURRENCY}
        if rate_limit_rps is not None:
            email.update(rate_limit_rps=rate_limit_rps, rate_limit_burst=5)
        data = config_data(self.bootstrap, self.simulator, topics, upstreams={"email": email},
                           **engine)  # fmt: skip
        only_email = [c for c in data["checks"]["customer.v1"] if c["upstream"] == "email"]
        data["checks"] = {"customer.v1": only_email} if checks else {}
        data["delivery"] = delivery
        return save_config(self.work / f"{name}.yaml", data)

    def processor_cmd(self, config: Path, workers: int = 1) -> list[str]:
        run = ["-m", "processor.cli", "run", "--config", str(config), "--workers", str(workers)]
        if self.profile == "pyinstrument" and workers == 1:  # statistical, as a text tree
            report = self.work / f"{config.stem}.profile.txt"
            return [sys.executable, "-m", "pyinstrument", "--renderer", "text",
                    "--outfile", str(report), *run]  # fmt: skip
        if self.profile == "cprofile" and workers == 1:  # deterministic: calls and own time
            report = self.work / f"{config.stem}.pstats"
            return [sys.executable, "-m", "cProfile", "-o", str(report), *run]
        return [sys.executable, *run]

    def passthrough_cmd(self, name: str, topics: TopicsConfig) -> list[str]:
        return [sys.executable, "-m", "devtools.bench.passthrough",
                "--bootstrap", self.bootstrap, "--input", topics.input,
                "--output", topics.valid, "--group", f"bench-{self.run_id}-{name}"]  # fmt: skip

    async def simulator_set(self, **settings: Any) -> None:
        """Change the simulator's settings and zero its stats."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.post(f"{self.simulator}/_control", json=settings) as answer:
                answer.raise_for_status()
            async with http.post(f"{self.simulator}/_reset") as answer:
                answer.raise_for_status()

    async def simulator_requests(self, path: str) -> list[tuple[float, Any]]:
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"{self.simulator}/_requests", params={"path": path}) as answer,
        ):
            answer.raise_for_status()
            body = await answer.json()
        return [(float(t), status) for t, status in body["requests"]]

    @contextlib.asynccontextmanager
    async def launched(self, name: str, cmd: list[str]) -> AsyncIterator[Sampler]:
        """The system under test as a subprocess, sampled until it is stopped (SIGTERM)."""
        with (self.work / f"{name}.log").open("wb") as log:
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=log, cwd=REPO_ROOT)
        sampler = Sampler(proc.pid)
        sampler.others = {name: Sampler(pid) for name, pid in neighbours(os.getpid()).items()}
        for each in (sampler, *sampler.others.values()):
            each.start()
        try:
            yield sampler
        finally:
            for each in (sampler, *sampler.others.values()):
                each.stop()
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    async def _until(
        self, counter: OutcomeCounter | CommittedCounter, count: int, timeout_s: float
    ) -> int:
        """Poll the outcome count until it reaches ``count`` (or the deadline); return it."""
        deadline = time.monotonic() + timeout_s
        seen = await counter.count()
        while seen < count and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # a bounded poll of end offsets, not synchronisation
            seen = await counter.count()
        return seen

    async def _joined(self, group: str, members: int, timeout_s: float = 60) -> float:
        """Wait (bounded) until ``group`` is Stable with ``members`` members; when (epoch s)."""
        deadline = time.monotonic() + timeout_s
        while await stable_members(self.bootstrap, group) < members:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{group}: not {members} stable members in {timeout_s:g}s")
            await asyncio.sleep(0.1)  # a bounded poll of the group's state
        return time.time()

    async def backlog_run(
        self, name: str, count: int, cmd: Callable[[TopicsConfig], list[str]],
        corpus: Sequence[CorpusRecord], exactly_once: bool = False, members: int = 1,
    ) -> Result:  # fmt: skip
        """Produce ``count`` records, then let the system under test work through them
        (``exactly_once``: until the group committed them all, outcomes in transactions).

        ``members`` > 1 (``--workers``): the steady window starts only once the group is
        Stable with that many members, so the rate is that of all of them at work, not of
        the first one draining alone while the others join.
        """
        topics = self.topics(name)
        outcome_topics = [topics.valid, topics.invalid, topics.dead_letter]
        await create_topics(self.bootstrap, topics.input, outcome_topics, PARTITIONS)
        produced_in = await produce_backlog(self.bootstrap, topics.input, corpus, count)
        console.print(f"  {name}: backlog of {count:,} records produced in {produced_in:.1f}s")
        started = time.monotonic()
        counting = (
            CommittedCounter(self.bootstrap, f"group-{topics.input}", topics.input)
            if exactly_once
            else OutcomeCounter(self.bootstrap, outcome_topics, PARTITIONS)
        )
        joined_at = 0.0
        async with counting as counter, self.launched(name, cmd(topics)) as sampler:
            if members > 1:
                joined_at = await self._joined(f"group-{topics.input}", members)
            done = await self._until(counter, count, timeout_s=60 + count / 200)
        took = time.monotonic() - started
        times = await read_outcomes(
            self.bootstrap, outcome_topics, done, with_inputs=False,
            isolation_level="read_committed" if exactly_once else "read_uncommitted",
        )  # fmt: skip
        window = steady_window(sorted(t for t in times.appended_s if t >= joined_at))
        result = Result(
            scenario=name, records=count, records_per_s=round(window.rate, 1),
            cpu_s_per_1k=round(cpu_per_1k(sampler.cpu, window), 4),
            peak_rss_mib=round(sampler.peak_rss_mib, 1),
            extra={"outcomes": done, "wall_s": round(took, 1),
                   "window_s": round(window.end_s - window.start_s, 2),
                   **cores_used(sampler, window.start_s, window.end_s)},
        )  # fmt: skip
        workers = [cpu for pid, cpu in sampler.per_pid.items() if pid != sampler.pid]
        if len(workers) > 1:  # --workers: the supervisor's children, whole run
            result.extra["worker_cpu_s"] = sorted(round(cpu, 1) for cpu in workers)
        if done < count:
            result.notes = f"only {done:,} of {count:,} outcomes in time"
        return result

    async def latency_run(
        self, name: str, rate: float, seconds: float, cmd: Callable[[TopicsConfig], list[str]]
    ) -> Result:
        """Open-loop load at ``rate``: warm up, then measure produce-to-outcome latency."""
        topics = self.topics(name)
        outcome_topics = [topics.valid, topics.invalid, topics.dead_letter]
        await create_topics(self.bootstrap, topics.input, outcome_topics, PARTITIONS)
        warm_s = 5.0
        corpus = bench_records(int(rate * (seconds + warm_s)) + 100, seed=23)
        async with (
            OutcomeCounter(self.bootstrap, outcome_topics, PARTITIONS) as counter,
            self.launched(name, cmd(topics)) as sampler,
        ):
            warm = await produce_paced(self.bootstrap, topics.input, corpus, rate, warm_s)
            await self._until(counter, warm, timeout_s=60)
            measured_from = time.time()
            sent = await produce_paced(
                self.bootstrap, topics.input, corpus, rate, seconds, offset=warm
            )
            measured_to = time.time()
            done = await self._until(counter, warm + sent, timeout_s=60)
        times = await read_outcomes(self.bootstrap, outcome_topics, done, with_inputs=True)
        latencies = [(a - p) * 1000 for a, p in zip(times.appended_s, times.produced_s,
                                                    strict=True) if p >= measured_from]  # fmt: skip
        offered = sent / seconds  # the paced phase; measured_to also covers its flush
        delivered = len(latencies) / sent if sent else 0.0  # share of the inputs answered
        cpu_spent = cpu_between(sampler, measured_from, measured_to)
        return Result(
            scenario=name, records=sent, records_per_s=round(offered, 1),
            cpu_s_per_1k=round(1000 * cpu_spent / max(1, len(latencies)), 4),
            p50_ms=round(percentile(latencies, 50), 1), p99_ms=round(percentile(latencies, 99), 1),
            peak_rss_mib=round(sampler.peak_rss_mib, 1), bound=round(rate, 1),
            bound_is="target rate; ratio: inputs answered", ratio=round(delivered, 4),
            target=str(Target(low=1.0)), met=Target(low=1.0).met(delivered),
            extra={"offered_per_s": rate, "latency_samples": len(latencies),
                   **cores_used(sampler, measured_from, measured_to),
                   "p90_ms": round(percentile(latencies, 90), 1),
                   "max_ms": round(max(latencies), 1)},
        )  # fmt: skip


async def scenarios(bench: Bench, sizes: Sizes, only: set[str]) -> list[Result]:
    """Run the chosen scenarios in order (later ones take their bounds from earlier ones)."""
    results: list[Result] = []

    def wanted(name: str) -> bool:
        return not only or name in only

    corpus = bench_records(max(sizes.passthrough, sizes.schema_only, sizes.upstream_bound,
                               sizes.scale, sizes.rate_limited, sizes.exactly_once))  # fmt: skip
    proc_cmd = bench.processor_cmd
    passthrough = schema_only = upstream = None

    if wanted("passthrough"):
        console.print("[bold]passthrough[/]: minimal aiokafka consume-then-produce loop")
        passthrough = await bench.backlog_run(
            "passthrough", sizes.passthrough, lambda t: bench.passthrough_cmd("passthrough", t),
            corpus,
        )  # fmt: skip
        results.append(judge(passthrough, passthrough.records_per_s or 0, "itself", Target()))

    if wanted("schema-only"):
        console.print("[bold]schema-only[/]: the processor, schema validation, no checks")
        schema_only = await bench.backlog_run(
            "schema-only", sizes.schema_only,
            lambda t: proc_cmd(bench.config("schema-only", t, checks=False)), corpus,
        )  # fmt: skip
        bound = passthrough.records_per_s if passthrough and passthrough.records_per_s else 0
        results.append(judge(schema_only, bound, "passthrough records/s", Target(low=0.70)))

    peers = await peer_runs(bench, sizes.schema_only, corpus, wanted, console.print)
    results += [*peers, *comparisons(schema_only, passthrough, peers)]

    if wanted("exactly-once"):
        console.print("[bold]exactly-once[/]: schema-only with delivery: exactly_once")
        exactly_once = await bench.backlog_run(
            "exactly-once", sizes.exactly_once,
            lambda t: proc_cmd(bench.config("exactly-once", t, checks=False,
                                            delivery="exactly_once")),
            corpus, exactly_once=True,
        )  # fmt: skip
        bound = schema_only.records_per_s if schema_only and schema_only.records_per_s else 0
        results.append(judge(exactly_once, bound, "schema-only records/s", Target()))
        if bound and exactly_once.records_per_s:
            exactly_once.notes = f"{exactly_once.records_per_s / bound:.2f}x schema-only"

    schema_rate = schema_only.records_per_s if schema_only else None
    up_bound = upstream_bound(CONCURRENCY, UPSTREAM_LATENCY_MS, schema_rate)
    if wanted("upstream-bound"):
        console.print(f"[bold]upstream-bound[/]: e-mail check, {UPSTREAM_LATENCY_MS:g} ms fixed")
        await bench.simulator_set(latency_ms=UPSTREAM_LATENCY_MS, latency_distribution="fixed",
                                  rate_limit_rps=0)  # fmt: skip
        upstream = await bench.backlog_run(
            "upstream-bound", sizes.upstream_bound,
            lambda t: proc_cmd(bench.config("upstream-bound", t, checks=True)), corpus,
        )  # fmt: skip
        results.append(judge(upstream, *up_bound, Target(low=0.90)))

    if wanted("upstream-bound-batched"):
        batched = await upstream_bound_batched(
            bench, sizes.upstream_bound, corpus, UPSTREAM_LATENCY_MS, console.print
        )
        results.append(judge(batched, *up_bound, Target(low=0.90)))

    rate_limited = await _rate_limited(bench, sizes, corpus) if wanted("rate-limited") else None
    results += [rate_limited] if rate_limited else []

    if wanted("rate-limited-batched"):
        results += await rate_limited_batched(
            bench, sizes.upstream_bound, corpus, RATE_LIMIT_RPS, rate_limited, console.print
        )

    if wanted("latency"):
        max_rate = (upstream.records_per_s if upstream else None) or 1_000.0
        rate = round(max_rate / 2, 1)
        console.print(f"[bold]latency[/]: upstream-bound config at {rate:,.0f} records/s")
        await bench.simulator_set(latency_ms=UPSTREAM_LATENCY_MS, latency_distribution="fixed",
                                  rate_limit_rps=0)  # fmt: skip
        results.append(await bench.latency_run(
            "latency", rate, sizes.latency_s,
            lambda t: proc_cmd(bench.config("latency", t, checks=True)),
        ))  # fmt: skip
        console.print("[bold]latency-passthrough[/]: the same load through passthrough")
        floor = await bench.latency_run(
            "latency-passthrough",
            rate,
            sizes.latency_s,
            lambda t: bench.passthrough_cmd("latency-passthrough", t),
        )
        floor.notes = "the stack's own latency at the same rate"
        results.append(floor)
        processed = results[-2]
        processed.notes = (f"p99 {processed.p99_ms:g} ms against the copy loop's "
                           f"{floor.p99_ms:g} ms at the same rate, over a "
                           f"{UPSTREAM_LATENCY_MS:g} ms upstream; "
                           + where_cores(processed.extra))  # fmt: skip

    if wanted("scale"):
        console.print("[bold]scale[/]: schema-only with --workers 2")
        scale = await bench.backlog_run(
            "scale", sizes.scale,
            lambda t: proc_cmd(bench.config("scale", t, checks=False), workers=2), corpus,
            members=2,
        )  # fmt: skip
        one = schema_only.records_per_s if schema_only and schema_only.records_per_s else 0
        judge(scale, 2 * one, "2 x schema-only records/s", Target())
        if one and scale.records_per_s:
            scale.extra["speedup"] = round(scale.records_per_s / one, 2)
            scale.notes = f"{scale.extra['speedup']}x one worker; " + where_cores(scale.extra)
        results.append(scale)

    if wanted("memory"):
        results.append(await _memory(bench, sizes))

    if wanted("api"):
        console.print(f"[bold]api[/]: /v1/validate/batch, e-mail check at {UPSTREAM_LATENCY_MS:g} "
                      f"ms, limit {RATE_LIMIT_RPS:g}/s; single /v1/validate meanwhile")  # fmt: skip
        records = bench_records(sizes.api + 1_500, seed=29)  # then single calls, warm-up
        config = bench.config("api", bench.topics("api"), checks=True,
                              rate_limit_rps=RATE_LIMIT_RPS)  # fmt: skip
        results.append(await api_row(
            bench, config, lambda c: [sys.executable, "-m", "processor.cli", "serve", "--config",
                                      str(c)],
            records[: sizes.api], records[sizes.api : -500], records[-500:],
            rate_limit_rps=RATE_LIMIT_RPS,
            latency_ms=UPSTREAM_LATENCY_MS,
        ))  # fmt: skip
    return results


async def _rate_limited(bench: Bench, sizes: Sizes, corpus: Sequence[CorpusRecord]) -> Result:
    console.print(f"[bold]rate-limited[/]: upstream limit {RATE_LIMIT_RPS:g} requests/s")
    await bench.simulator_set(latency_ms=5, latency_distribution="fixed",
                              rate_limit_rps=RATE_LIMIT_RPS, rate_limit_burst=20)  # fmt: skip
    result = await bench.backlog_run(
        "rate-limited", sizes.rate_limited,
        lambda t: bench.processor_cmd(
            bench.config("rate-limited", t, checks=True, rate_limit_rps=RATE_LIMIT_RPS)
        ),
        corpus,
    )  # fmt: skip
    requests = await bench.simulator_requests(EMAIL_PATH)
    await bench.simulator_set(rate_limit_rps=0)
    answered = sorted(t for t, status in requests if status == 200)
    too_many = sum(1 for _, status in requests if status == 429)
    window = steady_window(answered)
    target = Target(low=0.98, high=1.02)
    result.bound, result.bound_is, result.target = RATE_LIMIT_RPS, "requests/s", str(target)
    result.ratio = round(window.rate / RATE_LIMIT_RPS, 4)
    result.met = bool(target.met(result.ratio)) and too_many == 0
    result.extra.update(requests_per_s=round(window.rate, 1), answered_429=too_many,
                        requests=len(requests))  # fmt: skip
    result.notes = f"{window.rate:.1f} requests/s, {too_many} answered 429"
    return result


async def _memory(bench: Bench, sizes: Sizes) -> Result:
    name = "memory"
    console.print(f"[bold]memory[/]: {sizes.memory:,}-record backlog, {sizes.memory_s:g}s")
    topics = bench.topics(name)
    outcome_topics = [topics.valid, topics.invalid, topics.dead_letter]
    await create_topics(bench.bootstrap, topics.input, outcome_topics, PARTITIONS)
    corpus = [r for r in build_corpus(10_001, keys=200, seed=9) if r.label != "record.too_large"]
    produced_in = await produce_backlog(bench.bootstrap, topics.input, corpus, sizes.memory)
    console.print(f"  memory: backlog produced in {produced_in:.1f}s")
    await bench.simulator_set(latency_ms=UPSTREAM_LATENCY_MS, latency_distribution="fixed",
                              rate_limit_rps=0)  # fmt: skip
    config = bench.config(name, topics, checks=True, rss_budget_mib=RSS_BUDGET_MIB)
    counts: list[tuple[float, int]] = []
    async with (
        OutcomeCounter(bench.bootstrap, outcome_topics, PARTITIONS) as counter,
        bench.launched(name, bench.processor_cmd(config)) as sampler,
    ):
        end = time.monotonic() + sizes.memory_s
        while time.monotonic() < end:
            counts.append((time.time(), await counter.count()))
            await asyncio.sleep(0.5)  # sampling interval of a fixed-length run
    (t0, c0), (t1, c1) = counts[len(counts) // 5], counts[-1]
    rate = (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0
    target = Target(high=1.0)
    peak = round(sampler.peak_rss_mib, 1)
    return Result(
        scenario=name, records=sizes.memory, records_per_s=round(rate, 1),
        cpu_s_per_1k=round(1000 * cpu_between(sampler, t0, t1) / max(1, c1 - c0), 4),
        peak_rss_mib=peak, bound=RSS_BUDGET_MIB, bound_is="engine.max_rss_mib (MiB)",
        ratio=round(peak / RSS_BUDGET_MIB, 3), target=str(target),
        met=target.met(peak / RSS_BUDGET_MIB),
        notes=f"{c1:,} outcomes in {sizes.memory_s:g}s of a {sizes.memory:,} backlog",
        extra={"outcomes": c1, "rss_mib_every_5s": [round(v) for _, v in sampler.rss[::50]]},
    )  # fmt: skip
