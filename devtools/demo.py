"""``make run``: the whole system on one machine, on demo records, with a summary.

Starts a real local Kafka broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``) and the upstream
simulator, creates this run's topics, starts ``processor run --config`` as a subprocess,
publishes the demo corpus (valid records, schema violations, upstream rejections,
malformed bytes, unknown types, broken envelopes, one oversized record), shows a progress
bar while outcomes arrive, and prints counts per outcome topic and reason code.

Then prints one sample outcome of each kind. With ``--keep-running`` (or ``DEMO_KEEP=1``) the
stack stays up after the summary, so the printed URLs can be opened, until Ctrl-C.

Exit code 0 only when every input has exactly the outcome it was built to get. Everything
started here is stopped again, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from devtools import stack
from devtools.corpus import build_corpus
from devtools.reconcile import (
    OutcomeCollector,
    Reconciliation,
    SeenOutcome,
    publish_corpus,
    reconcile,
)

RUN_DIR = stack.RUN_DIR
# soft_wrap: long lines (paths, URLs) are never broken by rich, also when not on a terminal
console = Console(soft_wrap=True)
SAMPLE_CHARS = 600


@contextlib.contextmanager
def _stack() -> Iterator[stack.Stack]:
    started = time.monotonic()
    with (
        console.status("Starting Kafka (a local KRaft broker unless KAFKA_BOOTSTRAP_SERVERS)..."),
        contextlib.ExitStack() as running,
    ):
        up = running.enter_context(stack.running(RUN_DIR))
        cleanup = running.pop_all()
    with cleanup:
        if up.broker is None:
            console.print(f"[bold]Kafka[/]: using KAFKA_BOOTSTRAP_SERVERS={up.bootstrap}")
        else:
            console.print(
                f"[bold]Kafka[/]: local broker on {up.bootstrap}, "
                f"ready in {time.monotonic() - started:.1f}s (log: {up.broker.log_file})"
            )
        console.print(
            f"[bold]Upstream simulator[/]: {up.simulator_url} (e-mail, VAT, sanctions APIs)"
        )
        yield up


async def _processor_url(log_path: Path, proc: asyncio.subprocess.Process) -> str | None:
    """The operations URL from the processor's ``processor.started`` line (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.returncode is None:
        text = await asyncio.to_thread(log_path.read_text, errors="replace")
        for line in text.splitlines():
            if '"processor.started"' in line:
                return str(json.loads(line).get("http") or "") or None
        await asyncio.sleep(0.1)  # polling the log file for one line, bounded above
    return None


def _summary(result: Reconciliation, elapsed_s: float) -> Table:
    table = Table(title="Demo summary", show_lines=False)
    table.add_column("outcome topic / reason code")
    table.add_column("records", justify="right")
    for topic in ("valid", "invalid", "dead-letter"):
        table.add_row(f"[bold]{topic}[/]", f"[bold]{result.by_topic.get(topic, 0)}[/]")
        for reason, n in sorted(result.by_reason.items()):
            if reason.startswith(f"{topic}/"):
                table.add_row(f"  {reason.split('/', 1)[1]}", str(n))
    table.add_row("inputs", str(result.total))
    table.add_row("missing", str(len(result.missing)))
    table.add_row("wrong outcome", str(len(result.wrong)))
    table.add_row("duplicates", str(result.duplicates) + (" (!)" if result.duplicates else ""))
    rate = (result.total - len(result.missing)) / elapsed_s if elapsed_s > 0 else 0.0
    table.add_row("records/s (first to last outcome)", f"{rate:,.0f}")
    return table


def _samples(in_order: list[SeenOutcome]) -> Iterator[str]:
    """One outcome of each kind, compact: the outcome document, or a dead letter's headers."""
    for kind in ("valid", "invalid", "dead-letter"):
        sample = next((o for o in in_order if o.kind == kind), None)
        if sample is None:
            continue
        if kind == "dead-letter":
            shown = json.dumps(
                {k: v.decode(errors="replace") for k, v in sample.headers if k.startswith("dlq.")}
            )
        else:
            shown = json.dumps(json.loads(sample.value or b"{}"), separators=(",", ":"))
        if len(shown) > SAMPLE_CHARS:
            shown = shown[:SAMPLE_CHARS] + "..."
        yield f"[bold]{kind}[/] ({sample.reason}): {shown}"


async def _until_interrupted() -> None:
    """Wait for Ctrl-C or SIGTERM (the stack stays up meanwhile)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _run(up: stack.Stack, count: int, keep: bool) -> int:
    run_id = time.strftime("%Y%m%d-%H%M%S")
    topics = stack.topics_named(f"demo-{run_id}")
    await stack.create_topics(up.bootstrap, topics, partitions=6)
    corpus = build_corpus(count, keys=50, seed=int(time.time()) % 10_000)
    coords = await publish_corpus(up.bootstrap, topics.input, corpus)
    console.print(
        f"[bold]Published[/] {len(corpus):,} demo records to {topics.input} (6 partitions)"
    )

    config = stack.write_config(
        RUN_DIR / "demo-config.yaml", up.bootstrap, up.simulator_url, topics
    )
    log_path = RUN_DIR / "processor.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "processor.cli", "run", "--config", str(config),
            stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    console.print(f"[bold]Processor[/]: pid {proc.pid}, config {config}, logs {log_path}")
    url = await _processor_url(log_path, proc)
    if url:
        console.print(f"[bold]Watch it[/]: {url}/status  {url}/metrics  {url}/readyz  {url}/docs")
    first_at: float | None = None
    last_at = 0.0
    collector = OutcomeCollector(up.bootstrap, topics)
    try:
        with Progress(
            TextColumn("outcomes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console,
        ) as progress:  # fmt: skip
            bar = progress.add_task("outcomes", total=len(coords))
            done_before = 0

            def on_progress(done: int) -> None:
                nonlocal first_at, last_at, done_before
                now = time.monotonic()
                if done and first_at is None:
                    first_at = now
                if done != done_before:
                    last_at, done_before = now, done
                progress.update(bar, completed=done)

            await collector.collect(
                set(coords), timeout_s=300, on_progress=on_progress, settle_s=1.0,
                give_up=lambda: proc.returncode is not None,
            )  # fmt: skip
        result = reconcile(corpus, coords, collector.seen)
        elapsed = (last_at - first_at) if first_at is not None else 0.0
        console.print(_summary(result, elapsed))
        console.print("[bold]Sample outcomes[/] (one of each kind):")
        for line in _samples(collector.in_order):
            console.print(f"  {line}", markup=True, highlight=False)
        for index, expected, got in result.wrong[:10]:
            console.print(f"[red]wrong[/]: {corpus[index].label} expected {expected}, got {got}")
        if keep and proc.returncode is None:
            console.print(
                f"[bold]Still running[/] (--keep-running): {url or 'the processor'}, "
                f"Kafka {up.bootstrap}, simulator {up.simulator_url}; Ctrl-C stops everything"
            )
            await _until_interrupted()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(proc.wait(), 60)
    ok = result.ok and result.duplicates == 0 and exit_code == 0
    verdict = "[green]every input accounted for" if ok else "[red]NOT every input accounted for"
    console.print(f"{verdict}[/] (processor exit code {exit_code})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 0 only when every input landed where expected."""
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=int(os.environ.get("DEMO_RECORDS", 3000)))
    parser.add_argument(
        "--keep-running",
        action="store_true",
        default=os.environ.get("DEMO_KEEP", "") not in ("", "0"),
        help="after the summary, leave the stack up (so its URLs can be opened) until Ctrl-C "
        "(also DEMO_KEEP=1)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    try:
        with _stack() as up:
            return asyncio.run(_run(up, args.records, args.keep_running))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: everything started has been stopped[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
