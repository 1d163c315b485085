"""Per-test Kafka topics and processor configs built from the annotated example config."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from processor.app import App
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
    path: Path,
    bootstrap: str,
    simulator_url: str,
    topics: TopicsConfig,
    upstreams: dict[str, dict[str, Any]] | None = None,
    **engine: Any,
) -> Path:
    """The example config pointed at this test's broker, simulator and topics.

    ``upstreams`` overrides keys per upstream (``{"email": {"rate_limit_rps": 200}}``).
    """
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["kafka"]["bootstrap_servers"] = bootstrap
    data["kafka"]["group_id"] = f"group-{topics.input}"
    data["kafka"]["topics"] = topics.model_dump()
    data["engine"].update(engine)
    data["logging"] = {"level": "info", "format": "json"}
    data["endpoint"] = {"port": 0}  # tests run instances side by side: any free port
    for name, upstream in data["upstreams"].items():
        upstream["base_url"] = simulator_url
        upstream.update((upstreams or {}).get(name, {}))
    path.write_text(yaml.safe_dump(data))
    return path


def settings_for(
    tmp_path: Path,
    bootstrap: str,
    simulator_url: str,
    topics: TopicsConfig,
    upstreams: dict[str, dict[str, Any]] | None = None,
    **engine: Any,
) -> Settings:
    path = tmp_path / "processor.yaml"
    return load_settings(write_config(path, bootstrap, simulator_url, topics, upstreams, **engine))


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[App]:
    """Run the processor in this event loop; stop it gracefully (bounded) on exit."""
    app = App(settings)
    task = asyncio.create_task(app.run())
    try:
        yield app
    finally:
        app.request_stop()
        exit_code = await asyncio.wait_for(task, 90)
        assert exit_code == 0
