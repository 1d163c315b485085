"""Per-test Kafka topics and processor configs built from the annotated example config."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml

from processor.config import Settings, TopicsConfig, load_settings
from processor.kafka import ensure_topics

EXAMPLE_CONFIG = (
    Path(__file__).resolve().parents[2] / "deploy" / "config" / "processor.example.yaml"
)


def unique_topics(prefix: str) -> TopicsConfig:
    """Fresh topic names, so tests never read each other's records."""
    run = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return TopicsConfig(
        input=f"{run}.in", valid=f"{run}.valid", invalid=f"{run}.invalid", dead_letter=f"{run}.dlq"
    )


async def create_topics(bootstrap: str, topics: TopicsConfig, partitions: int) -> None:
    await ensure_topics(
        bootstrap, [topics.input, topics.valid, topics.invalid, topics.dead_letter], partitions
    )


def write_config(
    path: Path, bootstrap: str, simulator_url: str, topics: TopicsConfig, **engine: Any
) -> Path:
    """The example config pointed at this test's broker, simulator and topics."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["kafka"]["bootstrap_servers"] = bootstrap
    data["kafka"]["group_id"] = f"group-{topics.input}"
    data["kafka"]["topics"] = topics.model_dump()
    data["engine"].update(engine)
    data["logging"] = {"level": "info", "format": "json"}
    for upstream in data["upstreams"].values():
        upstream["base_url"] = simulator_url
    path.write_text(yaml.safe_dump(data))
    return path


def settings_for(
    tmp_path: Path, bootstrap: str, simulator_url: str, topics: TopicsConfig, **engine: Any
) -> Settings:
    return load_settings(
        write_config(tmp_path / "processor.yaml", bootstrap, simulator_url, topics, **engine)
    )
