"""Safety under churn: the CLI as a subprocess, killed, joined, drained, its broker restarted.

Each test drives real processors against a real broker and the real simulator and checks
the delivery promise of docs/architecture.md: every input gets its expected outcome (at
least once), per-key order holds apart from redone records, and a clean drain commits
exactly what it published. The figures each test measures are printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from devtools.corpus import build_corpus
from devtools.local_kafka import LocalKafka
from devtools.reconcile import Coordinates, SeenOutcome, publish_corpus, reconcile
from devtools.stack import config_data, save_config
from tests.support.cli_process import CliProcesses, events, exited, tail
from tests.support.services import simulator_process
from tests.support.setup import (
    NO_UPSTREAM,
    create_topics,
    schema_only_corpus,
    unique_topics,
    write_config,
)
from tests.support.sim import SimControl
from tests.support.watch import OutcomeWatch, committed_offsets, watching

# A SIGKILLed member stays in the group until its session times out, and every restart
# waits for that: the broker's minimum (6 s) keeps five crashes within the time budget.
FAST_FAILOVER = {"session_timeout_ms": 6_000, "heartbeat_interval_ms": 1_000}
PROGRESS_TIMEOUT_S = 90.0  # for a few thousand outcomes, or a restart after a crash
FINISH_TIMEOUT_S = 180.0


def _seconds_between(earlier: dict[str, Any], later: dict[str, Any]) -> float:
    """Seconds between two log events (their ISO-8601 ``timestamp``)."""
    start, end = (datetime.fromisoformat(e["timestamp"]) for e in (earlier, later))
    return (end - start).total_seconds()


def _group_of(config: Path) -> str:
    return str(yaml.safe_load(config.read_text())["kafka"]["group_id"])


def _with_kafka(config: Path, **kafka: Any) -> Path:
    """The config with some ``kafka`` keys changed (write_config only changes engine keys)."""
    data = yaml.safe_load(config.read_text())
    data["kafka"].update(kafka)
    config.write_text(yaml.safe_dump(data))
    return config


def _first_occurrences_in_order(outcomes: list[SeenOutcome]) -> list[str]:
    """Per (outcome topic, key), the input offsets in outcome-log order, repeats dropped,
    must increase; returns a description of each (topic, key) where they do not.

    A record redone after a crash or rebalance may appear again later, after records that
    followed it: only the order of first occurrences is promised.
    """
    by_key: dict[tuple[str, bytes | None], list[int]] = defaultdict(list)
    for outcome in sorted(outcomes, key=lambda o: (o.kind, o.partition, o.offset)):
        by_key[(outcome.kind, outcome.key)].append(outcome.input[1])
    broken = []
    for (kind, key), offsets in by_key.items():
        firsts = list(dict.fromkeys(offsets))
        if firsts != sorted(firsts):
            broken.append(f"{kind} {key!r}: {firsts[:20]}...")
    return broken


def _made_by(outcomes: list[SeenOutcome], pid: int) -> int:
    """How many outcomes the processor with this pid published (instance ``<host>-<pid>``)."""
    mark = f"-{pid}".encode()
    count = 0
    for outcome in outcomes:
        if outcome.kind == "dead-letter":
            count += dict(outcome.headers).get("dlq.processor", b"").endswith(mark)
        else:
            count += mark + b'"' in (outcome.value or b"")
    return count


def _drain_mismatches(
    coords: list[Coordinates], committed: dict[int, int], seen: dict[Coordinates, Any]
) -> Iterator[str]:
    """Inputs below their partition's committed offset without an outcome, and at or above
    it with one."""
    for partition, offset in coords:
        below = offset < committed.get(partition, 0)
        has_outcome = (partition, offset) in seen
        if below and not has_outcome:
            yield f"{partition}:{offset} committed without an outcome"
        elif not below and has_outcome:
            yield f"{partition}:{offset} has an outcome but is not committed"


async def _wait_all_outcomes(
    watch: OutcomeWatch,
    group: str,
    coords: list[Coordinates],
    timeout_s: float,
    give_up: Callable[[], bool],
) -> None:
    """Wait until every input has an outcome, or until the group has committed every input:
    an outcome missing then will never come, and the reconciliation names it at once."""
    ends: dict[int, int] = {}
    for partition, offset in coords:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    deadline = time.monotonic() + timeout_s
    while not watch.complete:
        committed = await committed_offsets(watch.bootstrap, group, watch.topics.input)
        if all(committed.get(p, 0) >= end for p, end in ends.items()):
            await watch.caught_up(60)
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"an outcome for every input did not happen within {timeout_s}s")
        with contextlib.suppress(TimeoutError):  # look at the commits again each second
            await watch.wait_for(lambda: watch.complete, 1.0, "every outcome", give_up)


async def test_sigkill_at_random_moments_leaves_every_input_with_its_expected_outcome(
    kafka_bootstrap: str, tmp_path: Path, cli: CliProcesses
) -> None:
    """A processor SIGKILLed five times at random moments of a 50,000-record run and
    restarted each time leaves every input with its expected outcome, keys in order.

    Schema-only (no upstream checks), so the 50,000 records take a minute, not three on a
    2-core machine; the workers test kills a process with upstream calls in flight."""
    kills, rng = 5, random.Random(20_261_122)
    topics = unique_topics("kill9")
    await create_topics(kafka_bootstrap, topics, partitions=6)
    corpus = schema_only_corpus(57_500, keys=60, seed=23)
    assert len(corpus) >= 50_000
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    # static membership: each restart takes the killed member's place and partitions at
    # once, where a new member would wait out the dead one's session (the other tests
    # here cover dynamic membership)
    data = config_data(kafka_bootstrap, NO_UPSTREAM, topics)
    data["checks"] = {}
    data["kafka"].update(group_instance_id="kill9-static", **FAST_FAILOVER)
    config = save_config(tmp_path / "processor.yaml", data)
    log = tmp_path / "processor.log"
    started = time.monotonic()
    try:
        async with watching(kafka_bootstrap, topics, set(coords)) as watch:
            for _ in range(kills):
                proc = await cli.start(config, log)
                target = watch.read + rng.randint(2_000, 8_000)
                await watch.wait_read(target, PROGRESS_TIMEOUT_S, give_up=exited(proc))
                await proc.kill()
                print(f"kill -9 at {watch.read} outcomes read, {len(watch.collector.seen)} done")
            assert not watch.complete, "the run ended before the last kill: not mid-stream"
            last = await cli.start(config, log)
            await _wait_all_outcomes(
                watch, _group_of(config), coords, FINISH_TIMEOUT_S, give_up=exited(last)
            )
            assert await last.stop() == 0
            await watch.caught_up(60)
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n{tail(log)}") from exc

    result = reconcile(corpus, coords, watch.collector.seen)
    print(
        f"kill -9 x{kills}: {len(corpus)} inputs in {time.monotonic() - started:.1f}s, "
        f"{result.duplicates} duplicates ({result.duplicates / kills:.0f} per crash)"
    )
    assert result.missing == [], f"{len(result.missing)} inputs have no outcome"
    assert result.wrong == []
    assert _first_occurrences_in_order(watch.collector.in_order) == []


async def test_processor_recovers_by_itself_from_a_broker_restart_mid_run(
    stoppable_broker: LocalKafka, simulator_url: str, tmp_path: Path, cli: CliProcesses
) -> None:
    """A processor whose broker restarts mid-run resumes by itself, and every input gets its
    expected outcome."""
    broker = stoppable_broker
    log = tmp_path / "processor.log"
    try:
        bootstrap = broker.bootstrap_servers
        topics = unique_topics("restart")
        await create_topics(bootstrap, topics, partitions=6)
        corpus = build_corpus(4_000, keys=60, seed=29)
        coords = await publish_corpus(bootstrap, topics.input, corpus)
        config = write_config(tmp_path / "processor.yaml", bootstrap, simulator_url, topics)
        async with watching(bootstrap, topics, set(coords)) as watch:
            proc = await cli.start(config, log)
            await watch.wait_read(2_000, PROGRESS_TIMEOUT_S, give_up=exited(proc))
            # broker.restart() in two steps, to know when the broker was down
            stopping_at = time.monotonic()
            await asyncio.to_thread(broker.stop)
            down_at_ms = time.time() * 1000
            await asyncio.to_thread(broker.start)
            ready_at = time.monotonic()

            def first_new() -> int | None:
                # an outcome made while the broker was down or after; dead letters keep
                # their input's timestamp, so only outcome documents tell when they were made
                return next(
                    (i for i, o in enumerate(watch.collector.in_order)
                     if o.kind != "dead-letter" and o.timestamp >= down_at_ms),
                    None,
                )  # fmt: skip

            await watch.wait_for(
                lambda: first_new() is not None, PROGRESS_TIMEOUT_S,
                "an outcome written after the restart", give_up=exited(proc),
            )  # fmt: skip
            new = first_new()
            assert new is not None
            recovery_s = watch.arrival_time(new) - ready_at
            await _wait_all_outcomes(
                watch, _group_of(config), coords, FINISH_TIMEOUT_S, give_up=exited(proc)
            )
            assert await proc.stop() == 0
            await watch.caught_up(60)
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n{tail(log)}\nbroker:\n{broker.log_tail()}") from exc
    finally:
        await cli.reap()

    result = reconcile(corpus, coords, watch.collector.seen)
    print(
        f"broker restart: took {ready_at - stopping_at:.1f}s; first new outcome read "
        f"{recovery_s:.2f}s after the broker was ready; {result.duplicates} duplicates"
    )
    assert result.missing == [], f"{len(result.missing)} inputs have no outcome"
    assert result.wrong == []


async def test_instance_joining_then_leaving_mid_run_loses_nothing_and_keeps_key_order(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path, cli: CliProcesses
) -> None:
    """A second instance that joins the group mid-run and later leaves on SIGTERM (exit 0)
    costs no input its outcome and breaks no key's order."""
    topics = unique_topics("join")
    await create_topics(kafka_bootstrap, topics, partitions=6)
    # two thirds of the input arrive once B is in the group, so B always has work of its
    # own, however fast A went through the first third alone
    corpus = build_corpus(9_000, keys=60, seed=31)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus[:3_000])
    config = write_config(tmp_path / "processor.yaml", kafka_bootstrap, simulator_url, topics)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    expected = set(coords)
    try:
        async with watching(kafka_bootstrap, topics, expected) as watch:
            a = await cli.start(config, log_a)
            await watch.wait_read(2_000, PROGRESS_TIMEOUT_S, give_up=exited(a))
            joined_at = time.monotonic()
            b = await cli.start(config, log_b)
            await watch.wait_for(
                lambda: any(e["partitions"] for e in events(log_b, "intake.assigned")),
                PROGRESS_TIMEOUT_S, "partitions for B", give_up=exited(a, b),
            )  # fmt: skip
            later = await publish_corpus(kafka_bootstrap, topics.input, corpus[3_000:])
            coords += later
            expected.update(later)  # the watch reads until these have outcomes too
            # B leaves once it has itself published outcomes (on the join, A's drain of
            # everything in flight alone can produce thousands)
            await watch.wait_for(
                lambda: _made_by(watch.collector.in_order, b.pid) >= 500,
                PROGRESS_TIMEOUT_S, "500 outcomes from B", give_up=exited(a, b),
            )  # fmt: skip
            left_at = time.monotonic()
            assert await b.stop() == 0
            await _wait_all_outcomes(
                watch, _group_of(config), coords, FINISH_TIMEOUT_S, give_up=exited(a)
            )
            done_at = time.monotonic()
            assert await a.stop() == 0
            await watch.caught_up(60)
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n{tail(log_a, log_b)}") from exc

    (b_stopped,) = events(log_b, "processor.stopped")
    (b_started,) = events(log_b, "processor.started")
    b_assigned = next(e for e in events(log_b, "intake.assigned") if e["partitions"])
    result = reconcile(corpus, coords, watch.collector.seen)
    print(
        f"join/leave: B got partitions {_seconds_between(b_started, b_assigned):.1f}s after "
        f"it started, finished {b_stopped['finished']} records; longest pause between "
        f"outcomes before the join {watch.longest_gap_s(0, joined_at):.2f}s, around the join "
        f"{watch.longest_gap_s(joined_at, left_at):.2f}s, around the leave "
        f"{watch.longest_gap_s(left_at, done_at):.2f}s; {result.duplicates} duplicates"
    )
    assert b_stopped["finished"] > 0, "B never took part: the test proved nothing"
    assert result.missing == [], f"{len(result.missing)} inputs have no outcome"
    assert result.wrong == []
    assert _first_occurrences_in_order(watch.collector.in_order) == []


async def test_sigterm_under_heavy_in_flight_load_commits_exactly_what_it_published(
    kafka_bootstrap: str, tmp_path: Path, cli: CliProcesses
) -> None:
    """A SIGTERM with up to 2,000 records in flight against a slow upstream exits 0 within
    the drain deadline, and the group's committed offsets match the published outcomes."""
    drain_timeout_s = 10.0
    topics = unique_topics("drain")
    await create_topics(kafka_bootstrap, topics, partitions=6)
    corpus = build_corpus(8_000, keys=200, seed=37)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    log = tmp_path / "processor.log"
    with simulator_process("--latency-ms", "50") as slow_url:
        config = write_config(
            tmp_path / "processor.yaml", kafka_bootstrap, slow_url, topics,
            max_concurrency=256, max_in_flight=2_000, drain_timeout_s=drain_timeout_s,
        )  # fmt: skip
        try:
            async with watching(kafka_bootstrap, topics, set(coords)) as watch:
                proc = await cli.start(config, log)
                await watch.wait_read(1_000, PROGRESS_TIMEOUT_S, give_up=exited(proc))
                signalled_at, read_at_signal = time.monotonic(), watch.read
                exit_code = await proc.stop(drain_timeout_s + 10)
                exit_s = time.monotonic() - signalled_at
                assert exit_code == 0
                await watch.caught_up(60)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{tail(log)}") from exc

    committed = await committed_offsets(kafka_bootstrap, f"group-{topics.input}", topics.input)
    seen = watch.collector.seen
    (stopped,) = events(log, "processor.stopped")
    print(
        f"drain: exit 0 {exit_s:.2f}s after SIGTERM, ~{stopped['consumed'] - read_at_signal} "
        f"records in flight then; {len(seen)} of {len(coords)} inputs have an outcome; "
        f"committed {sorted(committed.items())}"
    )
    assert 0 < len(seen) < len(coords), "the drain was not mid-stream"
    assert list(_drain_mismatches(coords, committed, seen)) == []


async def test_revoke_drain_longer_than_the_session_keeps_the_member_and_its_commit(
    kafka_bootstrap: str, tmp_path: Path, cli: CliProcesses
) -> None:
    """A member whose revoke drain outlasts session_timeout_ms but not drain_timeout_s stays
    in the group and commits what it drained, so the instance that joined redoes nothing."""
    topics = unique_topics("slowdrain")
    await create_topics(kafka_bootstrap, topics, partitions=1)
    corpus = build_corpus(3_000, keys=6, seed=43)
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    with simulator_process() as url:  # its own: the test slows it down
        sim = SimControl(url)
        config = _with_kafka(
            write_config(
                tmp_path / "processor.yaml", kafka_bootstrap, url, topics,
                max_in_flight=120, max_in_flight_per_partition=120, drain_timeout_s=60.0,
            ),
            **FAST_FAILOVER,
        )  # fmt: skip
        try:
            async with watching(kafka_bootstrap, topics, set(coords)) as watch:
                a = await cli.start(config, log_a)
                await watch.wait_read(300, PROGRESS_TIMEOUT_S, give_up=exited(a))
                # A's 120 records in flight, ~20 per key, now take 0.7 s each: its drain on
                # revoke lasts longer than the 6 s session, well within drain_timeout_s.
                await sim.control(latency_ms=700)
                joined_at = time.monotonic()
                b = await cli.start(config, log_b)
                await watch.wait_for(
                    lambda: any(events(log_b, "intake.assigned")),
                    PROGRESS_TIMEOUT_S, "the rebalance B's join started", give_up=exited(a, b),
                )  # fmt: skip
                assigned_after_s = time.monotonic() - joined_at
                await sim.control(latency_ms=0)
                await _wait_all_outcomes(
                    watch, _group_of(config), coords, FINISH_TIMEOUT_S, give_up=exited(a, b)
                )
                assert await b.stop() == 0
                assert await a.stop() == 0
                await watch.caught_up(60)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{tail(log_a, log_b)}") from exc

    result = reconcile(corpus, coords, watch.collector.seen)
    failed_commits = len(list(events(log_a, "intake.commit_failed")))
    print(
        f"slow revoke drain: rebalance done {assigned_after_s:.1f}s after B started; "
        f"{result.duplicates} duplicates; {failed_commits} failed commits on A"
    )
    assert result.wrong == []
    assert result.duplicates == 0
