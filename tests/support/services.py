"""Real services for tests: a Kafka broker and the upstream simulator, started once per session.

Broker choice, in order: ``KAFKA_BOOTSTRAP_SERVERS`` if set; a testcontainers Kafka when a
Docker engine answers; else the project's own local KRaft broker (:func:`devtools.stack.kafka`).
A broker that cannot be had is an error, never a skip. The simulator is
:func:`devtools.stack.simulator`, re-exported here as :func:`simulator_process`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from devtools import stack
from devtools.local_kafka import LocalKafka

simulator_process = stack.simulator


def docker_engine_answers() -> bool:
    """True when a Docker engine answers a ping (the client alone is not enough)."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False  # nothing to ask (and docker-py leaks a socket when the ask fails)
    try:
        import docker

        client = docker.from_env(timeout=3)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()  # its connection pool, or the socket is left to the GC (a warning)


@contextlib.contextmanager
def kafka_broker(data_root: Path) -> Iterator[tuple[str, LocalKafka | None]]:
    """Yield ``(bootstrap_servers, local_broker_or_None)`` for the whole test session."""
    if not os.environ.get(stack.BOOTSTRAP_ENV) and docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server(), None
        return
    with stack.kafka(data_root) as service:
        yield service
