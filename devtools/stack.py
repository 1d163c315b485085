"""The development stack: a broker, the upstream simulator, topics and a processor config.

One owner for what the demo, the benchmark, the soak and the tests all need before a
processor can run:

- :func:`kafka`: ``KAFKA_BOOTSTRAP_SERVERS`` when set, else a local KRaft broker
  (:class:`~devtools.local_kafka.LocalKafka`) started and stopped around the block.
- :func:`simulator`: ``python -m devtools.simulator`` as a subprocess; yields its URL.
- :func:`topics_named`, :func:`create_topics`: a run's four topics.
- :func:`write_config`: the shipped example config pointed at this broker, simulator and
  topics (the one place that knows which keys a development run changes).
- :func:`running`: broker and simulator together, for the command-line tools.
- :func:`free_port` (from :mod:`devtools.local_kafka`, which picks its listeners with it).

Developer tooling only, used from a source checkout: it blocks (subprocesses) and is never
imported by the service.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devtools.local_kafka import REPO_ROOT, LocalKafka, free_port
from processor.config import TopicsConfig
from processor.kafka import ensure_topics

RUN_DIR = REPO_ROOT / ".run"
EXAMPLE_CONFIG = REPO_ROOT / "deploy" / "config" / "processor.example.yaml"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"

__all__ = [
    "Stack",
    "config_data",
    "create_topics",
    "free_port",
    "kafka",
    "running",
    "save_config",
    "simulator",
    "topics_named",
    "write_config",
]
SIMULATOR_START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def topics_named(base: str) -> TopicsConfig:
    """The four topics of one run: ``<base>.in``, ``.valid``, ``.invalid`` and ``.dlq``."""
    return TopicsConfig(
        input=f"{base}.in", valid=f"{base}.valid", invalid=f"{base}.invalid",
        dead_letter=f"{base}.dlq",
    )  # fmt: skip


async def create_topics(bootstrap: str, topics: TopicsConfig, partitions: int) -> None:
    """Create the run's four topics (those that exist already are kept)."""
    await ensure_topics(bootstrap, topics.names(), partitions)


def config_data(
    bootstrap: str,
    simulator_url: str,
    topics: TopicsConfig,
    *,
    upstreams: Mapping[str, Mapping[str, Any]] | None = None,
    log_level: str = "info",
    **engine: Any,
) -> dict[str, Any]:
    """The example config as a dict, pointed at this run.

    The consumer group is ``group-<input topic>``; the operations endpoint and the API take
    any free port (instances run side by side); ``engine`` keys override the engine section and
    ``upstreams`` overrides keys per upstream (``{"email": {"rate_limit_rps": 200}}``).
    """
    data: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["kafka"].update(
        bootstrap_servers=bootstrap, group_id=f"group-{topics.input}", topics=topics.model_dump()
    )
    data["engine"].update(engine)
    data["logging"] = {"level": log_level, "format": "json"}
    data["endpoint"]["port"] = 0
    data.setdefault("api", {})["port"] = 0
    for name, upstream in data["upstreams"].items():
        upstream["base_url"] = simulator_url
        upstream.update((upstreams or {}).get(name, {}))
    return data


def save_config(path: Path, data: Mapping[str, Any]) -> Path:
    """Write a config dict as YAML, in the example's key order."""
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return path


def write_config(
    path: Path,
    bootstrap: str,
    simulator_url: str,
    topics: TopicsConfig,
    *,
    upstreams: Mapping[str, Mapping[str, Any]] | None = None,
    log_level: str = "info",
    **engine: Any,
) -> Path:
    """:func:`config_data` written to ``path``; returns ``path``."""
    data = config_data(
        bootstrap, simulator_url, topics, upstreams=upstreams, log_level=log_level, **engine
    )
    return save_config(path, data)


@contextlib.contextmanager
def kafka(data_root: Path, *, fresh: bool = True) -> Iterator[tuple[str, LocalKafka | None]]:
    """Yield ``(bootstrap servers, our local broker or None)`` for the block.

    ``KAFKA_BOOTSTRAP_SERVERS`` wins when set; otherwise a local broker in ``data_root``
    (emptied first when ``fresh``) is started, and stopped when the block ends.
    """
    configured = os.environ.get(BOOTSTRAP_ENV)
    if configured:
        yield configured, None
        return
    if fresh:
        shutil.rmtree(data_root, ignore_errors=True)
    broker = LocalKafka(data_root=data_root)
    broker.start()
    try:
        yield broker.bootstrap_servers, broker
    finally:
        broker.stop()


def simulator_command(*args: str) -> list[str]:
    """The command line of a simulator on a free 127.0.0.1 port."""
    return [sys.executable, "-m", "devtools.simulator", "--port", "0", *args]


@contextlib.contextmanager
def simulator(*args: str) -> Iterator[str]:
    """Run the upstream simulator as a subprocess with ``args``; yield its URL.

    It runs in its own session (Ctrl-C in a terminal reaches the caller, which stops it
    after the processor drained), from the checkout so ``devtools`` imports.
    """
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            simulator_command(*args), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=errors,
            stdin=subprocess.DEVNULL, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the simulator prints one line once it listens
            if not line:
                errors.seek(0)
                raise RuntimeError(f"simulator did not start: {errors.read().decode()[-2000:]}")
            yield str(json.loads(line)["url"])
        finally:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
            if proc.stdout is not None:
                proc.stdout.close()


# What the command-line tools run the simulator with: a little, realistic latency.
TOOL_SIMULATOR_ARGS = ("--latency-ms", "3", "--latency-distribution", "exponential", "--seed", "1")


@dataclass(frozen=True)
class Stack:
    """A running broker and simulator."""

    bootstrap: str
    simulator_url: str
    broker: LocalKafka | None  # None when KAFKA_BOOTSTRAP_SERVERS named one


@contextlib.contextmanager
def running(run_dir: Path = RUN_DIR) -> Iterator[Stack]:
    """A broker (fresh, under ``run_dir/kafka``) and the simulator, stopped after the block."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (
        kafka(run_dir / "kafka") as (bootstrap, broker),
        simulator(*TOOL_SIMULATOR_ARGS) as simulator_url,
    ):
        yield Stack(bootstrap, simulator_url, broker)
