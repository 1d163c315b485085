"""The CLI as a subprocess: SIGTERM mid-stream, restart, and nothing is lost."""

from __future__ import annotations

from pathlib import Path

from devtools.corpus import build_corpus
from devtools.reconcile import OutcomeCollector, publish_corpus, reconcile
from tests.support.cli_process import CliProcesses
from tests.support.setup import create_topics, unique_topics, write_config
from tests.support.waiting import wait_until

DRAIN_TIMEOUT_S = 15.0


async def test_sigterm_mid_stream_then_restart_leaves_no_input_without_outcome(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path, cli: CliProcesses
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
    first = await cli.start(config, tmp_path / "first.log")
    partial = OutcomeCollector(kafka_bootstrap, topics)
    some = set(coords[:300])  # wait until some outcomes are out, not all
    assert await partial.collect(some, timeout_s=120), first.tail()
    exit_code = await first.stop(DRAIN_TIMEOUT_S + 30)
    assert exit_code == 0, first.tail()
    assert first.events("processor.stopped")
    seen_before_restart = len(partial.seen)
    assert seen_before_restart < len(coords), "the first run finished everything: not mid-stream"

    second = await cli.start(config, tmp_path / "second.log")
    collector = OutcomeCollector(kafka_bootstrap, topics)
    complete = await collector.collect(set(coords), timeout_s=180, settle_s=1.0)
    # a SIGTERM before the processor handles signals would kill it: wait until it runs
    await wait_until(lambda: bool(second.events("processor.started")), 60, "second start")
    assert await second.stop(DRAIN_TIMEOUT_S + 30) == 0, second.tail()

    result = reconcile(corpus, coords, collector.seen)
    assert complete, f"{len(result.missing)} inputs have no outcome"
    assert result.missing == []
    assert result.wrong == []
