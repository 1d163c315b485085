"""``make bench`` row "api": batch validation over HTTP under an upstream rate limit, and how a
single ``/v1/validate`` fares meanwhile.

The system under test is ``processor serve`` (the validation API alone) in its own process,
its one check (e-mail) against the simulator answering after 20 ms and allowing
``rate_limit_rps`` requests a second per path, the processor's own limit set the same.
After a warm-up batch (not measured: a cold process's first upstream requests open their
connections and reach the upstream in a clump), batches of ``batch_size`` events are posted
one after another; meanwhile one client sends
single ``/v1/validate`` calls back to back, each for an e-mail not asked before (the response
cache never answers). The row: records/s of the batches against the rate limit (one upstream
call per record), p50/p99 of the single calls, and the simulator's 429s (must be zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import yaml

from devtools.bench.report import Result
from devtools.bench.stats import Target, percentile, steady_window
from devtools.corpus import CorpusRecord
from devtools.local_kafka import free_port

EMAIL_PATH = "/v1/email/verify"
JSON = {"content-type": "application/json"}


class Sampled(Protocol):
    """The CPU and memory sampler of the system under test (``devtools.bench.procs``)."""

    @property
    def peak_rss_mib(self) -> float: ...


class BenchRun(Protocol):
    """What the scenario uses of :class:`devtools.bench.run.Bench`."""

    work: Path

    def launched(
        self, name: str, cmd: list[str]
    ) -> contextlib.AbstractAsyncContextManager[Any]: ...  # fmt: skip

    async def simulator_set(self, **settings: Any) -> None: ...
    async def simulator_requests(self, path: str) -> list[tuple[float, Any]]: ...


async def _until_ready(http: aiohttp.ClientSession, base: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/readyz") as answer:
                if answer.status == 200:
                    return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API at {base} was not ready within {timeout_s}s")
        await asyncio.sleep(0.2)  # a bounded poll of a process starting up


@contextlib.asynccontextmanager
async def _single_calls(
    http: aiohttp.ClientSession, base: str, probes: Sequence[CorpusRecord]
) -> AsyncIterator[list[float]]:
    """Single /v1/validate calls back to back while the block runs; their latencies (ms)."""
    latencies: list[float] = []

    async def loop() -> None:
        for record in probes:
            started = time.perf_counter()
            async with http.post(f"{base}/v1/validate", data=record.value) as answer:
                await answer.read()
                if answer.status == 200:
                    latencies.append((time.perf_counter() - started) * 1000)

    task = asyncio.create_task(loop())
    try:
        yield latencies
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def api_config(base_config: Path, port: int, batch_size: int) -> Path:
    """``base_config`` with the API on ``port`` and batches of ``batch_size`` allowed."""
    data = yaml.safe_load(base_config.read_text())
    data["api"] = {"port": port, "max_batch_items": batch_size, "batch_deadline_s": 25.0}
    path = base_config.with_name(f"{base_config.stem}-api.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def api_row(
    bench: BenchRun, config: Path, serve_cmd: Callable[[Path], list[str]],
    records: Sequence[CorpusRecord], probes: Sequence[CorpusRecord],
    warmup: Sequence[CorpusRecord], *, rate_limit_rps: float, latency_ms: float,
    batch_size: int = 1_000,
) -> Result:  # fmt: skip
    """Run the scenario (after a ``warmup`` batch, not measured); its row (``met``: the
    upstream used within 10% of its limit, no 429, every item judged)."""
    port = free_port()
    await bench.simulator_set(latency_ms=latency_ms, latency_distribution="fixed",
                              rate_limit_rps=rate_limit_rps, rate_limit_burst=20)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    timeout = aiohttp.ClientTimeout(total=300)
    batches = [records[i : i + batch_size] for i in range(0, len(records), batch_size)]
    async with (
        bench.launched("api", serve_cmd(api_config(config, port, batch_size))) as sampler,
        aiohttp.ClientSession(timeout=timeout) as http,
    ):
        await _until_ready(http, base, 60)

        async def judged_in(batch: Sequence[CorpusRecord]) -> int:
            body = b"[" + b",".join(r.value or b"null" for r in batch) + b"]"
            async with http.post(f"{base}/v1/validate/batch", data=body, headers=JSON) as a:
                result = await a.json()
            return sum(1 for item in result["items"] if item["status"] == 200)

        # warm up: the processor opens its connections to the upstream (their requests
        # would reach the simulator in a clump) and the first requests pay for imports
        await judged_in(warmup)
        await bench.simulator_set(rate_limit_rps=rate_limit_rps, rate_limit_burst=20)
        started = time.monotonic()
        async with _single_calls(http, base, probes) as latencies:
            judged = 0
            for batch in batches:
                judged += await judged_in(batch)
        took_s = time.monotonic() - started
        peak = sampler.peak_rss_mib
    requests = await bench.simulator_requests(EMAIL_PATH)
    await bench.simulator_set(rate_limit_rps=0)
    too_many = sum(1 for _, status in requests if status == 429)
    upstream = steady_window(sorted(t for t, status in requests if status == 200))
    # the limit used, and held; between two batches the upstream idles while the answer of
    # 1,000 outcome documents is encoded and the next batch decoded (a few % of the time)
    target = Target(low=0.90, high=1.02)
    ratio = upstream.rate / rate_limit_rps
    return Result(
        scenario="api", records=len(records), records_per_s=round(judged / took_s, 1),
        p50_ms=round(percentile(latencies, 50), 1) if latencies else None,
        p99_ms=round(percentile(latencies, 99), 1) if latencies else None,
        peak_rss_mib=round(peak, 1), bound=rate_limit_rps,
        bound_is="upstream requests/s; p50/p99: single /v1/validate during the batches",
        ratio=round(ratio, 3), target=str(target),
        met=bool(target.met(ratio)) and too_many == 0 and judged == len(records),
        notes=f"{upstream.rate:.1f} upstream requests/s, {too_many} answered 429; "
        f"{len(latencies)} single calls; {judged:,} batch items judged",
        extra={"answered_429": too_many, "single_calls": len(latencies), "judged": judged,
               "upstream_requests_per_s": round(upstream.rate, 1),
               "wall_s": round(took_s, 1), "batch_size": batch_size},
    )  # fmt: skip
