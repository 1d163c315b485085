"""The operations endpoint over a real socket: the offline /docs page, the runtime
collectors in /metrics, and a taken port as an EndpointError."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from processor.endpoint import EndpointServer, build_api
from processor.errors import EndpointError
from processor.metrics import Metrics


class StaticSource:
    """A StatusSource with fixed answers."""

    def liveness(self) -> dict[str, bool]:
        return {"live": True}

    def readiness(self) -> dict[str, bool]:
        return {"ready": True}

    def status(self) -> dict[str, Any]:
        return {"instance": "test"}

    def resume_guard(self, by: str) -> dict[str, Any]:
        return {"resumed": by == "endpoint"}


@pytest.fixture
async def port() -> AsyncIterator[int]:
    """An endpoint serving on a free loopback port for the test's duration."""
    server = EndpointServer(build_api(StaticSource(), Metrics().registry), "127.0.0.1", 0)
    await server.start()
    try:
        yield server.port
    finally:
        await server.stop()


async def _get(port: int, path: str) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        return resp.status, await resp.text()


async def test_docs_is_a_self_contained_page_listing_every_endpoint(port: int) -> None:
    """/docs lists each documented path and links the OpenAPI document, loading nothing
    from elsewhere (no script, no external URL); the CDN-backed pages are gone."""
    status, page = await _get(port, "/docs")
    assert status == 200
    for path in ("/livez", "/healthz", "/readyz", "/metrics", "/status", "/openapi.json"):
        assert f'href="{path}"' in page
    assert "<script" not in page
    assert "http://" not in page
    assert "https://" not in page
    assert (await _get(port, "/redoc"))[0] == 404
    assert (await _get(port, "/docs/oauth2-redirect"))[0] == 404


async def test_metrics_include_the_process_and_runtime_collectors(port: int) -> None:
    """/metrics carries memory, CPU, open files, the Python version and GC counts."""
    status, text = await _get(port, "/metrics")
    assert status == 200
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    expected = {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
                "python_info", "python_gc_collections_total"}  # fmt: skip
    assert expected <= names


async def test_a_taken_port_is_an_endpoint_error_naming_the_address() -> None:
    """Starting on a port another socket listens on raises EndpointError, not SystemExit."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = EndpointServer(build_api(StaticSource(), Metrics().registry), "127.0.0.1", port)
        with pytest.raises(EndpointError, match=f"127.0.0.1:{port}"):
            await server.start()
