"""``make bench``: run the chosen scenarios (:mod:`devtools.bench.run`) and report them.

Starts a fresh local stack (broker and simulator), runs the scenarios, prints the table and
writes ``bench/results/<timestamp>.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import asdict

from devtools.bench.report import machine, markdown, table
from devtools.bench.run import RESULTS_DIR, Bench, Sizes, console, scenarios
from devtools.stack import running


async def _main(args: argparse.Namespace, bootstrap: str, simulator: str) -> int:
    run_id = time.strftime("%Y%m%d-%H%M%S")
    bench = Bench(bootstrap, simulator, run_id, args.profile)
    sizes = Sizes().scaled(args.scale)
    only = set(args.only.split(",")) if args.only else set()
    started = time.monotonic()
    results = await scenarios(bench, sizes, only)
    info = machine()
    title = (f"record-processor benchmark {run_id}: {info['cores']} cores, Python "
             f"{info['python']}, Kafka {info['kafka']}")  # fmt: skip
    console.print(table(results, title))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    report = {"run": run_id, "machine": info, "scale": args.scale,
              "seconds": round(time.monotonic() - started, 1),
              "results": [asdict(r) for r in results]}  # fmt: skip
    out = RESULTS_DIR / f"{run_id}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS_DIR / f"{run_id}.md").write_text(f"{title}\n\n{markdown(results)}\n")
    console.print(f"results: {out} (and .md)")
    if not args.no_chart:
        from devtools.bench.chart import draw

        png = draw(results, title, RESULTS_DIR / f"{run_id}.png")
        console.print(f"chart: {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every record count")
    parser.add_argument(
        "--profile",
        choices=("pyinstrument", "cprofile"),
        default="",
        help="run the processor under a profiler (its numbers then include "
        "the profiler's cost); reports in .run/bench/<run>/",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG (no matplotlib)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with running() as up:
            return asyncio.run(_main(args, up.bootstrap, up.simulator_url))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: everything started has been stopped[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
