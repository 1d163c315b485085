"""``make run``: the whole system on one machine, on demo records, with a summary.

Starts a real local Kafka broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``) and the upstream
simulator, creates this run's topics, starts ``processor run --config`` as a subprocess,
publishes the demo corpus (valid records, schema violations, upstream rejections,
malformed bytes, unknown types, broken envelopes, one oversized record), shows a progress
bar while outcomes arrive, and prints counts per outcome topic and reason code.

Exit code 0 only when every input has exactly the outcome it was built to get. Everything
started here is stopped again, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from processor.config import TopicsConfig
from processor.devtools.corpus import build_corpus
from processor.devtools.local_kafka import REPO_ROOT, LocalKafka
from processor.devtools.reconcile import (
    OutcomeCollector,
    Reconciliation,
    publish_corpus,
    reconcile,
)
from processor.kafka import ensure_topics

RUN_DIR = REPO_ROOT / ".run"
EXAMPLE_CONFIG = REPO_ROOT / "deploy" / "config" / "processor.example.yaml"
console = Console()


@contextlib.contextmanager
def _broker() -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        console.print(f"[bold]Kafka[/]: using KAFKA_BOOTSTRAP_SERVERS={configured}")
        yield configured
        return
    data = RUN_DIR / "kafka"
    shutil.rmtree(data, ignore_errors=True)
    broker = LocalKafka(data_root=data)
    started = time.monotonic()
    with console.status("Starting a local Apache Kafka broker (KRaft, 127.0.0.1)..."):
        broker.start()
    console.print(
        f"[bold]Kafka[/]: local broker on {broker.bootstrap_servers}, "
        f"ready in {time.monotonic() - started:.1f}s (log: {broker.log_file})"
    )
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@contextlib.contextmanager
def _simulator() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor.devtools.simulator", "--port", "0",
         "--latency-ms", "3", "--latency-distribution", "exponential", "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,  # Ctrl-C reaches the processor; we stop this after it drained
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = str(json.loads(proc.stdout.readline())["url"])
        console.print(f"[bold]Upstream simulator[/]: {url} (e-mail, VAT, sanctions APIs)")
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


def _write_config(bootstrap: str, simulator_url: str, topics: TopicsConfig) -> Path:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["kafka"].update(
        bootstrap_servers=bootstrap, group_id=f"demo-{topics.input}", topics=topics.model_dump()
    )
    data["logging"] = {"level": "info", "format": "json"}
    data["http"]["port"] = 0  # a free port; the processor logs which
    for upstream in data["upstreams"].values():
        upstream["base_url"] = simulator_url
    path = RUN_DIR / "demo-config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


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


async def _run(bootstrap: str, simulator_url: str, count: int) -> int:
    run_id = time.strftime("%Y%m%d-%H%M%S")
    topics = TopicsConfig(
        input=f"demo-{run_id}.in", valid=f"demo-{run_id}.valid",
        invalid=f"demo-{run_id}.invalid", dead_letter=f"demo-{run_id}.dlq",
    )  # fmt: skip
    await ensure_topics(
        bootstrap, [topics.input, topics.valid, topics.invalid, topics.dead_letter], partitions=6
    )
    corpus = build_corpus(count, keys=50, seed=int(time.time()) % 10_000)
    coords = await publish_corpus(bootstrap, topics.input, corpus)
    console.print(
        f"[bold]Published[/] {len(corpus):,} demo records to {topics.input} (6 partitions)"
    )

    config = _write_config(bootstrap, simulator_url, topics)
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
    collector = OutcomeCollector(bootstrap, topics)
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
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(proc.wait(), 60)
    result = reconcile(corpus, coords, collector.seen)
    elapsed = (last_at - first_at) if first_at is not None else 0.0
    console.print(_summary(result, elapsed))
    for index, expected, got in result.wrong[:10]:
        console.print(f"[red]wrong[/]: {corpus[index].label} expected {expected}, got {got}")
    ok = result.ok and result.duplicates == 0 and exit_code == 0
    verdict = "[green]every input accounted for" if ok else "[red]NOT every input accounted for"
    console.print(f"{verdict}[/] (processor exit code {exit_code})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 0 only when every input landed where expected."""
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=int(os.environ.get("DEMO_RECORDS", 3000)))
    args = parser.parse_args(argv)
    RUN_DIR.mkdir(exist_ok=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    try:
        with _broker() as bootstrap, _simulator() as simulator_url:
            return asyncio.run(_run(bootstrap, simulator_url, args.records))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: everything started has been stopped[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
