"""Exactly-once across crashes: the CLI killed with SIGKILL mid-transaction, again and again.

A ``delivery: exactly_once`` processor (schema-only, eight partitions, static membership so
that each restart gets its partitions back at once) is killed several times while it is
publishing, restarted each time, and finally stopped. A read_committed reader then finds
exactly one outcome per input; a read_uncommitted reader finds more (the aborted
transactions of the killed processes), which shows the kills hit open transactions and
that the check could fail. The figures are printed (run with ``-s``).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from devtools.reconcile import publish_corpus, read_to_end, reconcile
from tests.support.cli_process import CliProcesses, exited, tail
from tests.support.setup import (
    create_topics,
    exactly_once_config,
    schema_only_corpus,
    unique_topics,
)
from tests.support.watch import wait_committed, watching

KILLS = 4
PROGRESS_TIMEOUT_S = 60.0
FINISH_TIMEOUT_S = 120.0


async def test_sigkill_mid_transaction_leaves_exactly_one_committed_outcome_per_input(
    kafka_bootstrap: str, tmp_path: Path, cli: CliProcesses
) -> None:
    """An exactly-once processor SIGKILLed four times mid-transaction in a 50,000-record run
    and restarted each time leaves exactly one committed outcome per input: none lost,
    none duplicated, while the uncommitted view shows the aborted ones."""
    rng = random.Random(20_261_204)
    topics = unique_topics("eoskill")
    await create_topics(kafka_bootstrap, topics, partitions=8)
    corpus = schema_only_corpus(57_500, keys=400, seed=53)
    assert len(corpus) >= 50_000
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    config = exactly_once_config(
        tmp_path / "processor.yaml", kafka_bootstrap, topics,
        kafka={"group_instance_id": "eos-kill", "session_timeout_ms": 6_000,
               "heartbeat_interval_ms": 1_000},
    )  # fmt: skip
    group = f"group-{topics.input}"
    log = tmp_path / "processor.log"
    started = time.monotonic()
    try:
        async with watching(kafka_bootstrap, topics, set(coords)) as watch:
            for _ in range(KILLS):
                proc = await cli.start(config, log)
                # outcomes written, committed or not: the kill lands inside a transaction
                target = watch.read + rng.randint(4_000, 9_000)
                await watch.wait_read(target, PROGRESS_TIMEOUT_S, give_up=exited(proc))
                await proc.kill()
                print(f"kill -9 after {watch.read} outcome records written")
            last = await cli.start(config, log)
            await wait_committed(
                kafka_bootstrap, group, topics.input, coords, FINISH_TIMEOUT_S,
                give_up=exited(last),
            )  # fmt: skip
            assert await last.stop() == 0
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n{tail(log)}") from exc
    took_s = time.monotonic() - started

    committed = await read_to_end(kafka_bootstrap, topics, "read_committed")
    uncommitted = await read_to_end(kafka_bootstrap, topics, "read_uncommitted")
    result = reconcile(corpus, coords, committed)
    aborted = sum(map(len, uncommitted.values())) - sum(map(len, committed.values()))
    print(
        f"exactly-once, kill -9 x{KILLS}: {len(corpus)} inputs in {took_s:.1f}s; committed "
        f"view: {len(result.missing)} lost, {result.duplicates} duplicated; uncommitted "
        f"view: {aborted} aborted outcome records"
    )
    assert result.missing == [], f"{len(result.missing)} inputs have no committed outcome"
    assert result.duplicates == 0
    assert result.wrong == []
    assert set(committed) == set(coords)
    assert aborted > 0, "no kill hit an open transaction: the test proved nothing"
