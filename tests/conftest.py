"""Session fixtures: the real Kafka broker, a second one that tests may stop, and the real
upstream simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from devtools.local_kafka import LocalKafka
from tests.support.services import kafka_broker, simulator_process


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/integration and tests/e2e carry their marker (``-m "not e2e"``)."""
    for item in items:
        for marker in ("integration", "e2e"):
            if marker in item.path.parts:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def kafka_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, LocalKafka | None]]:
    """The session's broker: (bootstrap servers, our local broker if we started one)."""
    with kafka_broker(tmp_path_factory.mktemp("kafka")) as service:
        yield service


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_service: tuple[str, LocalKafka | None]) -> str:
    """Bootstrap servers of a broker that answered a real request."""
    return kafka_service[0]


@pytest.fixture(scope="session")
def stoppable_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of the tests that stop and start their broker (outages, restarts), apart
    from the session's so no other test sees them; started once, on first use."""
    broker = LocalKafka(data_root=tmp_path_factory.mktemp("stoppable-kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
async def stoppable_broker(stoppable_kafka: LocalKafka) -> LocalKafka:
    """:func:`stoppable_kafka`, running when the test starts (a test before may have
    stopped it)."""
    if stoppable_kafka.pid is None:
        await asyncio.to_thread(stoppable_kafka.start)
    return stoppable_kafka


@pytest.fixture(scope="session")
def simulator_url() -> Iterator[str]:
    """The URL of an upstream simulator subprocess with no faults injected."""
    with simulator_process() as url:
        yield url
