"""``processor run --workers 2``: two supervised workers in one group, one crash, no loss."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from processor.devtools.corpus import build_corpus
from processor.devtools.reconcile import OutcomeCollector, publish_corpus, reconcile
from tests.support.setup import create_topics, unique_topics, write_config
from tests.support.waiting import wait_until


def _events(log: Path, name: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            event = json.loads(line)
            if event.get("event") == name:
                found.append(event)
    return found


async def test_two_supervised_workers_share_the_group_and_a_killed_one_is_restarted(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path
) -> None:
    """Both workers take partitions; a worker killed with SIGKILL is restarted by the
    supervisor; every input still gets its expected outcome; SIGTERM stops all cleanly."""
    topics = unique_topics("workers")
    await create_topics(kafka_bootstrap, topics, partitions=4)
    corpus = build_corpus(6_000, keys=40, seed=41)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    config = write_config(tmp_path / "p.yaml", kafka_bootstrap, simulator_url, topics,
                          drain_timeout_s=10)  # fmt: skip
    log = tmp_path / "processor.log"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processor.cli", "run", "--workers", "2", "--config", str(config),
        stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await wait_until(lambda: len({e["instance"] for e in _events(log, "intake.assigned")
                                      if e.get("partitions")}) == 2,
                         timeout_s=60, what="both workers assigned")  # fmt: skip
        victim = _events(log, "supervisor.worker_started")[0]
        os.kill(victim["pid"], signal.SIGKILL)
        await wait_until(lambda: len(_events(log, "supervisor.worker_started")) >= 3,
                         timeout_s=30, what="the killed worker restarted")  # fmt: skip
        collector = OutcomeCollector(kafka_bootstrap, topics)
        complete = await collector.collect(set(coords), timeout_s=180, settle_s=1.0)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(proc.wait(), 60)
    result = reconcile(corpus, coords, collector.seen)
    print(f"\n--workers 2 with one SIGKILL: {result.duplicates} duplicate outcomes")
    assert complete, log.read_text()[-2000:]
    assert result.missing == []
    assert result.wrong == []
    tail = [line for line in log.read_text().splitlines() if "dead_lettered" not in line][-60:]
    assert exit_code == 0, "\n".join(tail)
    exited = _events(log, "supervisor.worker_exited")
    assert [e["worker"] for e in exited] == [victim["worker"]]
    assert exited[0]["exit_code"] == -signal.SIGKILL
