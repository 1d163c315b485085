"""``processor run --workers 2``: two supervised workers in one group, one crash, no loss."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from devtools.corpus import build_corpus
from devtools.reconcile import OutcomeCollector, publish_corpus, reconcile
from devtools.stack import config_data, save_config
from tests.support.cli_process import CliProcesses
from tests.support.setup import create_topics, unique_topics
from tests.support.waiting import wait_until


async def test_two_supervised_workers_share_the_group_and_a_killed_one_is_restarted(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path, cli: CliProcesses
) -> None:
    """Both workers take partitions; a worker killed with SIGKILL is restarted by the
    supervisor; every input still gets its expected outcome; SIGTERM stops all cleanly."""
    topics = unique_topics("workers")
    await create_topics(kafka_bootstrap, topics, partitions=4)
    corpus = build_corpus(4_000, keys=40, seed=41)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    data = config_data(kafka_bootstrap, simulator_url, topics, drain_timeout_s=10)
    # the killed worker's partitions move once its session ends: the broker's minimum
    data["kafka"].update(session_timeout_ms=6_000, heartbeat_interval_ms=1_000)
    config = save_config(tmp_path / "p.yaml", data)
    proc = await cli.start(config, tmp_path / "processor.log", "--workers", "2")
    await wait_until(lambda: len({e["instance"] for e in proc.events("intake.assigned")
                                  if e.get("partitions")}) == 2,
                     timeout_s=60, what="both workers assigned")  # fmt: skip
    victim = proc.events("supervisor.worker_started")[0]
    os.kill(victim["pid"], signal.SIGKILL)
    await wait_until(lambda: len(proc.events("supervisor.worker_started")) >= 3,
                     timeout_s=30, what="the killed worker restarted")  # fmt: skip
    collector = OutcomeCollector(kafka_bootstrap, topics)
    complete = await collector.collect(set(coords), timeout_s=180, settle_s=1.0)
    exit_code = await proc.stop()
    result = reconcile(corpus, coords, collector.seen)
    print(f"\n--workers 2 with one SIGKILL: {result.duplicates} duplicate outcomes")
    assert complete, proc.tail(2_000)
    assert result.missing == []
    assert result.wrong == []
    tail = [line for line in proc.log.read_text().splitlines() if "dead_lettered" not in line]
    assert exit_code == 0, "\n".join(tail[-60:])
    exited = proc.events("supervisor.worker_exited")
    assert [e["worker"] for e in exited] == [victim["worker"]]
    assert exited[0]["exit_code"] == -signal.SIGKILL
