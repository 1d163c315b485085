"""The dead-letter guard on the real broker: a run of bad records pauses intake, readiness
stays true, the records after them wait in Kafka, and an operator's resume lets them through."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.corpus import CorpusRecord, build_corpus
from devtools.reconcile import OutcomeCollector, publish_corpus
from processor.app import App
from processor.cli import HANDLED_SIGNALS, install_signal_handlers
from tests.support.setup import create_topics, running_app, settings_for, unique_topics
from tests.support.waiting import wait_until

GARBAGE, GOOD = 60, 100
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)


def _garbage(i: int) -> CorpusRecord:
    return CorpusRecord(f"garbage-{i}", b"k", b"\x00not json", (), None,
                        "dead-letter", "decode.failed")  # fmt: skip


def _metric(app: App, name: str) -> float:
    return app.metrics.registry.get_sample_value(name) or 0.0


def _status(app: App) -> dict[str, Any]:
    assert app.status is not None
    return app.status.status()


@pytest.mark.parametrize("resume_by", ["http", "sigusr2"])
async def test_a_run_of_dead_letters_holds_intake_until_an_operator_resumes(
    kafka_bootstrap: str, simulator_url: str, tmp_path: Path, resume_by: str
) -> None:
    """Past 40 outcomes with over half dead letters the guard trips: intake pauses with
    later records still in Kafka, /readyz stays 200, the gauge is 1; POST /guard/resume,
    or SIGUSR2 to the process as `processor run` handles it, lets the rest through, each
    with its one expected outcome."""
    topics = unique_topics("guard")
    await create_topics(kafka_bootstrap, topics, partitions=1)
    good = [r for r in build_corpus(400, seed=5) if r.expected_topic == "valid"][:GOOD]
    corpus = [_garbage(i) for i in range(GARBAGE)] + good
    settings = settings_for(
        tmp_path, kafka_bootstrap, simulator_url, topics,
        max_in_flight=10, max_in_flight_per_partition=10, fetch_max_records=5,
    )  # fmt: skip
    guard = {"enabled": True, "max_dead_letter_ratio": 0.5, "window_s": 300, "min_outcomes": 40}
    settings = settings.model_copy(
        update={"dead_letter_guard": settings.dead_letter_guard.model_copy(update=guard)}
    )
    coords = await publish_corpus(kafka_bootstrap, topics.input, corpus)
    async with running_app(settings) as app:
        await wait_until(lambda: app.guard is not None and app.guard.tripped, 60, "the trip")
        # held: nothing in flight, the partition paused, the rest waiting in Kafka
        await wait_until(
            lambda: _status(app)["in_flight"] == 0
            and _metric(app, "processor_paused_partitions") == 1
            and sum(_status(app)["lag"].values()) > 0,
            30, "intake held with records waiting",
        )  # fmt: skip
        held = _status(app)
        assert held["dead_letter_guard"]["tripped"] is True
        assert held["dead_letter_guard"]["top_reasons"] == {"decode.failed": 40}
        assert _metric(app, "processor_dead_letter_guard_tripped") == 1
        done_when_held = sum(held["outcomes_total"].values())
        assert 40 <= done_when_held < GARBAGE + GOOD
        url = f"http://127.0.0.1:{app.http_port}"
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
            async with session.get(f"{url}/readyz") as ready:
                assert ready.status == 200
            if resume_by == "http":
                async with session.post(f"{url}/guard/resume") as resumed:
                    assert (await resumed.json())["resumed"] is True
        if resume_by == "sigusr2":
            loop = asyncio.get_running_loop()
            install_signal_handlers(loop, app)
            try:
                os.kill(os.getpid(), signal.SIGUSR2)
                await wait_until(lambda: not app.guard or not app.guard.tripped, 10, "resume")
            finally:
                for sig in HANDLED_SIGNALS:
                    loop.remove_signal_handler(sig)
        collector = OutcomeCollector(kafka_bootstrap, topics)
        assert await collector.collect(set(coords), 60)
        assert _metric(app, "processor_dead_letter_guard_tripped") == 0
        assert app.guard is not None
        assert not app.guard.tripped
    kinds = Counter(o.kind for outcomes in collector.seen.values() for o in outcomes)
    assert kinds == {"dead-letter": GARBAGE, "valid": GOOD}
