"""The producer(s) and the group consumer of one instance, started and stopped together."""

from __future__ import annotations

import asyncio

from aiokafka.errors import (
    KafkaError,
)

from processor.config import KafkaConfig
from processor.errors import KafkaUnavailable
from processor.kafka.consumer import KafkaConsumer
from processor.kafka.factory import STOP_TIMEOUT_S, OutcomeProducer, make_consumer, make_producer
from processor.kafka.transactional import TransactionalProducers
from processor.kafka_auth import diagnose


class KafkaClients:
    """The producer(s) and the group consumer of one instance, started and stopped together.

    ``producer`` satisfies :class:`processor.outcomes.Producer`; ``consumer`` is the
    :class:`KafkaConsumer` the intake and the status poller use. With ``exactly_once`` the
    consumer reads committed records only, and ``transactions`` replaces ``producer``.
    """

    def __init__(self, config: KafkaConfig, *, max_partition_fetch_bytes: int,
                 drain_timeout_s: float, exactly_once: bool = False) -> None:  # fmt: skip
        self._config = config
        self._producer = make_producer(config)
        self.producer = OutcomeProducer(self._producer)
        isolation = "read_committed" if exactly_once else "read_uncommitted"
        self._consumer = make_consumer(
            config, max_partition_fetch_bytes, drain_timeout_s, isolation
        )
        self.consumer = KafkaConsumer(
            self._consumer, config.request_timeout_ms / 1000, config.auto_offset_reset
        )
        self.transactions = TransactionalProducers(config) if exactly_once else None

    async def start(self) -> None:
        """Start the clients (bootstrap, metadata), each within ``kafka.connect_timeout_s``;
        transactional producers start on assignment.

        Raises:
            KafkaUnavailable: The broker could not be reached or did not answer in time (the
                message names the address); nothing is left running.
        """
        timeout_s = self._config.connect_timeout_s
        address = self._config.bootstrap_servers
        try:
            if self.transactions is None:
                await asyncio.wait_for(self._producer.start(), timeout_s)
            await asyncio.wait_for(self._consumer.start(), timeout_s)
        except TimeoutError as exc:
            await self.stop(STOP_TIMEOUT_S)
            raise KafkaUnavailable(
                f"Kafka at {address} did not answer within {timeout_s:g}s "
                "(kafka.connect_timeout_s): is it a Kafka listener?"
            ) from exc
        except (KafkaError, OSError) as exc:
            await self.stop(STOP_TIMEOUT_S)
            security = self._config.security
            why = None if security.protocol == "PLAINTEXT" else await diagnose(security, address)
            if why is not None:  # a wrong password and an untrusted CA look alike in aiokafka
                raise KafkaUnavailable(f"cannot connect to Kafka: {why}") from exc
            raise KafkaUnavailable(f"cannot connect to Kafka at {address}: {exc!r}") from exc

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued record is acknowledged or failed; False on timeout/error."""
        if self.transactions is not None:
            return await self.transactions.flush(timeout_s)
        try:
            await asyncio.wait_for(self._producer.flush(), timeout_s)
        except (KafkaError, TimeoutError):
            return False
        return True

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Leave the group and close both clients, within ``timeout_s`` in all.

        A client that does not close in time (the broker is down: leaving the group waits on
        a coordinator) is given up; its session expires on the broker's side.
        """
        deadline = asyncio.get_running_loop().time() + timeout_s
        if self.transactions is not None:  # what was not committed is redone
            await self.transactions.close_all()
        for client in (self._consumer, self._producer):
            left = max(0.5, deadline - asyncio.get_running_loop().time())
            try:
                await asyncio.wait_for(client.stop(), left)
            except (KafkaError, TimeoutError, OSError):
                pass
            except asyncio.CancelledError:
                # aiokafka's fetcher cancels its pending fetches on close and then awaits
                # them: their CancelledError escapes consumer.stop(). Ours (a cancelled
                # caller) goes on.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
