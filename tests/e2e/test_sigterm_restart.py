"""The CLI as a subprocess: SIGTERM mid-stream, restart, and nothing is lost."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from processor.devtools.corpus import build_corpus
from processor.devtools.reconcile import OutcomeCollector, publish_corpus, reconcile
from tests.support.setup import create_topics, unique_topics, write_config

DRAIN_TIMEOUT_S = 15.0


async def _start(config: Path, log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processor.cli", "run", "--config", str(config),
        stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def test_sigterm_mid_stream_then_restart_leaves_no_input_without_outcome(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """A processor stopped by SIGTERM while records flow exits 0 within its drain deadline,
    and after a restart every input has its expected outcome."""
    topics = unique_topics("sigterm")
    await create_topics(kafka_bootstrap, topics, partitions=3)
    corpus = build_corpus(4_000, keys=40, seed=5)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    config = write_config(
        tmp_path / "processor.yaml", kafka_bootstrap, simulator_url, topics,
        drain_timeout_s=DRAIN_TIMEOUT_S, max_concurrency=32,
    )  # fmt: skip
    log = tmp_path / "processor.log"

    first = await _start(config, log)
    partial = OutcomeCollector(kafka_bootstrap, topics)
    some = set(coords[:300])  # wait until some outcomes are out, not all
    assert await partial.collect(some, timeout_s=120), log.read_text()[-3000:]
    first.send_signal(signal.SIGTERM)
    exit_code = await asyncio.wait_for(first.wait(), DRAIN_TIMEOUT_S + 30)
    assert exit_code == 0, log.read_text()[-3000:]
    assert '"event": "processor.stopped"' in log.read_text()
    seen_before_restart = len(partial.seen)
    assert seen_before_restart < len(coords), "the first run finished everything: not mid-stream"

    second = await _start(config, log)
    try:
        collector = OutcomeCollector(kafka_bootstrap, topics)
        complete = await collector.collect(set(coords), timeout_s=180, settle_s=1.0)
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), DRAIN_TIMEOUT_S + 30) == 0

    result = reconcile(corpus, coords, collector.seen)
    assert complete, f"{len(result.missing)} inputs have no outcome"
    assert result.missing == []
    assert result.wrong == []
