"""Per-test Kafka topics and processor configs (built by :mod:`devtools.stack`), and the
processor run in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from devtools.corpus import CorpusRecord, build_corpus
from devtools.stack import config_data, create_topics, save_config, topics_named, write_config
from processor.app import App
from processor.config import Settings, TopicsConfig, load_settings

__all__ = [
    "create_topics",
    "exactly_once_config",
    "running_app",
    "schema_only_corpus",
    "settings_for",
    "unique_topics",
    "write_config",
]
#: Schema-only runs call no upstream; a URL that nothing answers makes any call visible.
NO_UPSTREAM = "http://127.0.0.1:9"


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


def exactly_once_config(
    path: Path, bootstrap: str, topics: TopicsConfig, kafka: dict[str, Any] | None = None,
    **engine: Any,
) -> Path:  # fmt: skip
    """A schema-only (no checks, no upstream calls) ``delivery: exactly_once`` config;
    ``kafka`` keys and ``engine`` keys override the example's."""
    data = config_data(bootstrap, NO_UPSTREAM, topics, **engine)
    data["delivery"] = "exactly_once"
    data["checks"] = {}
    data["kafka"].update(kafka or {})
    return save_config(path, data)


def schema_only_corpus(count: int, *, keys: int, seed: int) -> list[CorpusRecord]:
    """About ``count`` records of :func:`build_corpus` whose outcome needs no upstream
    (valid, schema-invalid, dead letters), of ordinary size."""
    wanted = ("upstream.", "record.too_large")
    return [
        r for r in build_corpus(count, keys=keys, seed=seed)
        if not r.expected_reason.startswith(wanted)
    ]  # fmt: skip


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
