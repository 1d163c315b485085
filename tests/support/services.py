"""Real services for tests: a Kafka broker and the upstream simulator, started once per session.

Broker choice, in order: ``KAFKA_BOOTSTRAP_SERVERS`` if set; a testcontainers Kafka when a
Docker engine answers; else the project's own local KRaft broker. A broker that cannot be
had is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from processor.devtools.local_kafka import LocalKafka


def docker_engine_answers() -> bool:
    """True when a Docker engine answers a ping (the client alone is not enough)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


@contextlib.contextmanager
def kafka_broker(data_root: Path) -> Iterator[tuple[str, LocalKafka | None]]:
    """Yield ``(bootstrap_servers, local_broker_or_None)`` for the whole test session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured, None
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server(), None
        return
    broker = LocalKafka(data_root=data_root)
    broker.start()
    try:
        yield broker.bootstrap_servers, broker
    finally:
        broker.stop()


@contextlib.contextmanager
def simulator_process(*args: str) -> Iterator[str]:
    """Run ``python -m processor.devtools.simulator`` on 127.0.0.1 and yield its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor.devtools.simulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the simulator says it listens
        if not line:
            raise RuntimeError(
                f"simulator did not start: {proc.stderr.read() if proc.stderr else ''}"
            )
        yield str(json.loads(line)["url"])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
