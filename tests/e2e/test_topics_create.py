"""``processor topics create`` against the real broker: topics made with the configured
partitions, replication factor and topic configs, existing ones checked against the config."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.support.setup import unique_topics, write_config


async def _topics_create(config: Path, *flags: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processor.cli", "topics", "create", "--config", str(config),
        *flags, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _topic_config(bootstrap: str, topic: str, key: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (answer,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {key: None})]
        )
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    (resource,) = answer.resources
    return next(str(entry[1]) for entry in resource[4] if entry[0] == key)


async def test_topics_create_makes_topics_as_configured_then_checks_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Topics are made with the config's partitions and topic configs (per-topic overrides
    and flags included) and printed; run again, they are found; a flag asking for another
    partition count is a mismatch: exit 1 naming the topic."""
    topics = unique_topics("create")
    config = write_config(tmp_path / "p.yaml", kafka_bootstrap, "http://127.0.0.1:9", topics)
    data = yaml.safe_load(config.read_text())
    data["kafka"]["topic_settings"] = {
        "partitions": 2, "replication_factor": 1, "configs": {"retention.ms": 3_600_000},
        "per_topic": {"dead_letter": {"partitions": 1, "configs": {"retention.ms": 86_400_000}}},
    }  # fmt: skip
    config.write_text(yaml.safe_dump(data))
    code, out, err = await _topics_create(config, "--topic-config", "min.insync.replicas=1")
    assert (code, err) == (0, ""), err
    assert out.splitlines() == [
        f"created {topics.input}: 2 partitions, replication factor 1, "
        "retention.ms=3600000, min.insync.replicas=1",
        f"created {topics.valid}: 2 partitions, replication factor 1, "
        "retention.ms=3600000, min.insync.replicas=1",
        f"created {topics.invalid}: 2 partitions, replication factor 1, "
        "retention.ms=3600000, min.insync.replicas=1",
        f"created {topics.dead_letter}: 1 partitions, replication factor 1, "
        "retention.ms=86400000, min.insync.replicas=1",
    ]
    assert await _topic_config(kafka_bootstrap, topics.dead_letter, "retention.ms") == "86400000"
    assert await _topic_config(kafka_bootstrap, topics.input, "retention.ms") == "3600000"

    code, out, err = await _topics_create(config)
    assert (code, err) == (0, ""), err
    assert out.splitlines()[0] == f"exists  {topics.input}: 2 partitions, replication factor 1"

    code, out, err = await _topics_create(config, "--partitions", "4")
    assert code == 1
    assert err.splitlines() == [
        f"processor: {name} has partitions {has}, the config expects 4"
        for name, has in ((topics.input, 2), (topics.valid, 2), (topics.invalid, 2),
                          (topics.dead_letter, 1))
    ]  # fmt: skip


async def test_topics_create_refused_by_the_broker_exits_1_naming_the_topic_and_why(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A replication factor the one-node broker cannot give is a one-line error naming the
    topic and the broker's reason, exit 1."""
    topics = unique_topics("refused")
    config = write_config(tmp_path / "p.yaml", kafka_bootstrap, "http://127.0.0.1:9", topics)
    code, out, err = await _topics_create(config, "--replication-factor", "3")
    assert (code, out) == (1, "")
    (line,) = err.splitlines()
    assert line.startswith(f"processor: cannot create topics: {topics.input}: "), line
    assert "replication factor" in line.lower(), line
