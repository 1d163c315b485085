"""Topics: ``processor topics create`` (made as specified, or found and described), the
topics tests and tools need, partitions and message-size limits read from the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import (
    errors,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
)

from processor.config import KafkaConfig, KafkaSecurity
from processor.errors import KafkaUnavailable
from processor.kafka.factory import ADMIN_TIMEOUT_S
from processor.kafka.security import security_kwargs


@dataclass(frozen=True)
class TopicSpec:
    """A topic as ``processor topics create`` should make it (or find it)."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True)
class TopicFound:
    """A topic after ``processor topics create``: made now, or found with this layout."""

    spec: TopicSpec
    created: bool
    partitions: int
    replication_factor: int


def _layout(described: Mapping[str, Any]) -> tuple[int, int]:
    """Partitions and replication factor (the fewest replicas of any partition)."""
    partitions = described["partitions"]
    return len(partitions), min((len(p["replicas"]) for p in partitions), default=0)


def _refusals(topic_errors: Iterable[tuple[Any, ...]]) -> list[str]:
    """``topic: why`` for each topic the broker would not create ((topic, code[, message]))."""
    refused = []
    for topic, code, *rest in topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            refused.append(f"{topic}: {(rest and rest[0]) or errors.for_code(code).__name__}")
    return refused


async def create_or_find_topics(
    bootstrap_servers: str,
    specs: Sequence[TopicSpec],
    timeout_s: float = ADMIN_TIMEOUT_S,
    security: KafkaSecurity | None = None,
) -> list[TopicFound]:
    """Create the topics of ``specs`` that do not exist; describe them all.

    Raises:
        KafkaUnavailable: The broker could not be reached, did not answer within
            ``timeout_s``, or refused to create a topic (the message says which and why).
    """
    admin = AIOKafkaAdminClient(
        **security_kwargs(security),
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        existing = set(await asyncio.wait_for(admin.list_topics(), timeout_s))
        new = [s for s in specs if s.name not in existing]
        if new:
            answer = await asyncio.wait_for(admin.create_topics([
                NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs))
                for s in new
            ]), timeout_s)  # fmt: skip
            if refused := _refusals(answer.topic_errors):
                raise KafkaUnavailable("cannot create topics: " + "; ".join(refused))
        names = [s.name for s in specs]
        described = await asyncio.wait_for(admin.describe_topics(names), timeout_s)
    except (KafkaError, TimeoutError, OSError) as exc:
        raise KafkaUnavailable(f"cannot create topics on {bootstrap_servers}: {exc!r}") from exc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)
    layouts = {d["topic"]: _layout(d) for d in described}
    created = {s.name for s in new}
    return [TopicFound(s, s.name in created, *layouts.get(s.name, (0, 0))) for s in specs]


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    partitions: int,
    replication: int = 1,
    security: KafkaSecurity | None = None,
) -> None:
    """Create the topics that do not exist yet (idempotent; tests and tools).

    Raises:
        KafkaUnavailable: The broker could not be reached or refused.
    """
    specs = [TopicSpec(t, partitions, replication, {}) for t in dict.fromkeys(topics)]
    await create_or_find_topics(bootstrap_servers, specs, security=security)


async def topic_partitions(config: KafkaConfig, topics: Sequence[str]) -> dict[str, list[int]]:
    """The partitions of each of ``topics`` that exists (a fresh metadata request: a client's
    own metadata knows only the topics it subscribed to).

    Raises:
        KafkaUnavailable: The broker could not be reached.
    """
    admin = AIOKafkaAdminClient(
        **security_kwargs(config.security),
        bootstrap_servers=config.bootstrap_servers,
        request_timeout_ms=config.request_timeout_ms,
    )
    try:
        await asyncio.wait_for(admin.start(), ADMIN_TIMEOUT_S)
        described = await asyncio.wait_for(admin.describe_topics(list(topics)), ADMIN_TIMEOUT_S)
    except (KafkaError, TimeoutError, OSError) as exc:
        raise KafkaUnavailable(
            f"cannot describe topics on {config.bootstrap_servers}: {exc!r}"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)
    return {
        t["topic"]: sorted(p["partition"] for p in t["partitions"])
        for t in described
        if t["error_code"] == 0
    }


async def message_size_limits(config: KafkaConfig, topics: Sequence[str]) -> dict[str, int]:
    """Each existing topic's ``max.message.bytes`` (its own or the broker's default); the
    topics the broker would not describe are left out.

    Raises:
        KafkaUnavailable: The broker could not be reached.
    """
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(
        **security_kwargs(config.security),
        bootstrap_servers=config.bootstrap_servers,
        request_timeout_ms=config.request_timeout_ms,
    )
    wanted = [
        ConfigResource(ConfigResourceType.TOPIC, t, {"max.message.bytes": None}) for t in topics
    ]
    limits: dict[str, int] = {}
    try:
        await asyncio.wait_for(admin.start(), ADMIN_TIMEOUT_S)
        for response in await asyncio.wait_for(admin.describe_configs(wanted), ADMIN_TIMEOUT_S):
            for resource in response.to_object()["resources"]:
                for entry in resource["config_entries"] if resource["error_code"] == 0 else ():
                    if entry["config_names"] == "max.message.bytes":
                        limits[resource["resource_name"]] = int(entry["config_value"])
    except (KafkaError, TimeoutError, OSError) as exc:
        raise KafkaUnavailable(
            f"cannot describe topics on {config.bootstrap_servers}: {exc!r}"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)
    return limits
