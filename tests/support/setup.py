"""Per-test Kafka topics and processor configs (built by :mod:`devtools.stack`), and the
processor run in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from devtools.stack import create_topics, topics_named, write_config
from processor.app import App
from processor.config import Settings, TopicsConfig, load_settings

__all__ = ["create_topics", "running_app", "settings_for", "unique_topics", "write_config"]


def unique_topics(prefix: str) -> TopicsConfig:
    """Fresh topic names, so tests never read each other's records."""
    return topics_named(f"{prefix}-{uuid.uuid4().hex[:8]}")


def settings_for(
    tmp_path: Path,
    bootstrap: str,
    simulator_url: str,
    topics: TopicsConfig,
    upstreams: dict[str, dict[str, Any]] | None = None,
    **engine: Any,
) -> Settings:
    path = tmp_path / "processor.yaml"
    return load_settings(
        write_config(path, bootstrap, simulator_url, topics, upstreams=upstreams, **engine)
    )


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
