"""The operations endpoint, served from the processor's own event loop.

``/healthz`` (the process is alive), ``/readyz`` (partitions assigned, broker reachable,
not stalled: 200 or 503), ``/metrics`` (Prometheus text format), ``/status`` (JSON for
humans: assignments, lag, in-flight, breakers, recent outcome rates), and FastAPI's
OpenAPI document at ``/openapi.json`` and ``/docs``. Every handler only reads state the
engine keeps anyway, so a scrape never waits on record processing, nor the reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from processor import __version__

STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 5.0


class StatusSource(Protocol):
    """What the endpoint reports on (the app implements it)."""

    def readiness(self) -> dict[str, bool]: ...
    def status(self) -> dict[str, Any]: ...


def build_api(source: StatusSource, registry: CollectorRegistry) -> FastAPI:
    """The FastAPI application for one processor instance."""
    api = FastAPI(
        title="record-processor",
        version=__version__,
        summary="Health, readiness, metrics and status of one processor instance.",
    )

    @api.get("/healthz", summary="The process is alive and its event loop answers")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @api.get(
        "/readyz",
        summary="Partitions assigned, broker reachable, not stalled (200), else 503",
        responses={503: {"description": "not ready; the body says which condition fails"}},
    )
    async def readyz(response: Response) -> dict[str, bool]:
        checks = source.readiness()
        response.status_code = 200 if checks["ready"] else 503
        return checks

    @api.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/status", summary="Assignments, lag, in-flight, breakers, recent outcome rates")
    async def status() -> dict[str, Any]:
        return source.status()

    return api


class _InLoopServer(uvicorn.Server):
    """uvicorn without its own signal handling: the processor owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """Runs the API as a task of the current event loop."""

    def __init__(self, api: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(
            api, host=host, port=port, log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=int(SHUTDOWN_TIMEOUT_S),
        )  # fmt: skip
        self._server = _InLoopServer(config)
        self._task: asyncio.Task[None] | None = None
        self.port = port

    async def start(self) -> None:
        """Start listening; return once the socket is bound (``port`` is then the real one)."""
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not self._server.started:
                if self._task.done():
                    self._task.result()  # raises the bind error
                    raise RuntimeError("the HTTP server stopped while starting")
                await asyncio.sleep(0.01)  # uvicorn offers no started event to wait on
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, SHUTDOWN_TIMEOUT_S + 1)
