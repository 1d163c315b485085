"""``make soak-memory``: the processor's resident memory with a 1,000,000-record backlog.

Starts a local broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``) and the simulator, produces
the backlog (the demo corpus, repeated), runs ``processor run`` as a subprocess with
``engine.max_rss_mib`` set, samples its RSS from ``/proc/<pid>/status`` every 0.5 s while
it works through the backlog for ``--seconds``, and prints the peak and the budget.
Exit 1 if the peak went over the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools import stack
from devtools.bench import kafka_io as bench_io
from devtools.corpus import build_corpus


def rss_mib(pid: int) -> float:
    """Resident memory of another process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def produce_backlog(bootstrap: str, topic: str, count: int) -> float:
    """Produce ``count`` records cycling over a 10,000-record corpus; return seconds taken."""
    corpus = [r for r in build_corpus(10_001, keys=200, seed=9) if r.label != "record.too_large"]
    return await bench_io.produce_backlog(bootstrap, topic, corpus, count)


async def soak(bootstrap: str, simulator_url: str, count: int, seconds: float, budget: int) -> int:
    topics = stack.topics_named(f"soak-{time.strftime('%Y%m%d-%H%M%S')}")
    await stack.create_topics(bootstrap, topics, partitions=6)
    took = await produce_backlog(bootstrap, topics.input, count)
    print(f"produced a backlog of {count:,} records in {took:.1f}s")  # noqa: T201
    config = stack.write_config(
        stack.RUN_DIR / "soak-config.yaml", bootstrap, simulator_url, topics,
        log_level="warning", max_rss_mib=budget,
    )  # fmt: skip
    with (stack.RUN_DIR / "soak-processor.log").open("wb") as log:  # the child keeps its copy
        proc = subprocess.Popen(  # noqa: ASYNC220 - a dev tool; we only poll it below
            [sys.executable, "-m", "processor.cli", "run", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    peak = 0.0
    samples = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end and proc.poll() is None:
            rss = rss_mib(proc.pid)
            peak = max(peak, rss)
            samples.append(round(rss))
            await asyncio.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
        if proc.poll() is None:
            proc.kill()
    summary = {"backlog": count, "seconds": seconds, "budget_mib": budget,
               "peak_rss_mib": round(peak, 1), "rss_every_5s_mib": samples[::10]}  # fmt: skip
    print(json.dumps(summary))  # noqa: T201
    return 0 if peak <= budget else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--budget-mib", type=int, default=256)
    args = parser.parse_args(argv)
    with stack.running() as up:
        return asyncio.run(soak(up.bootstrap, up.simulator_url, args.records, args.seconds,
                                args.budget_mib))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
