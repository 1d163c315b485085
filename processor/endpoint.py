"""The operations endpoint, served from the processor's own event loop.

``/livez`` and its alias ``/healthz`` (the event loop answers and the intake loop runs: the
liveness probe), ``/readyz`` (started, in the group, broker reachable: 200 or 503; a standby
member without partitions is ready, a stall is not a probe failure), ``/metrics``
(Prometheus text format, process and Python runtime collectors included), ``/status`` (JSON
for humans: assignments, lag, in-flight, breakers, stalled, recent outcome rates), the
OpenAPI document at ``/openapi.json``, and ``/docs``: a small page listing the endpoints,
self-contained so it works without internet (FastAPI's Swagger and ReDoc pages load their
scripts from a CDN and are turned off). Every handler only reads state the engine keeps
anyway, so a scrape never waits on record processing, nor the reverse.

:class:`EndpointServer` binds the socket itself, so a taken port is an
:class:`~processor.errors.EndpointError` (uvicorn would ``sys.exit(3)`` inside the task).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import socket
from collections.abc import Generator
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from processor import __version__
from processor.errors import EndpointError

STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 5.0


class StatusSource(Protocol):
    """What the endpoint reports on (``processor.status.Status`` implements it)."""

    def liveness(self) -> dict[str, bool]: ...
    def readiness(self) -> dict[str, bool]: ...
    def status(self) -> dict[str, Any]: ...
    def resume_guard(self, by: str) -> dict[str, Any]: ...


def build_api(source: StatusSource, registry: CollectorRegistry) -> FastAPI:
    """The FastAPI application for one processor instance."""
    api = FastAPI(
        title="record-processor",
        version=__version__,
        summary="Health, readiness, metrics and status of one processor instance.",
        docs_url=None,
        redoc_url=None,
    )

    async def live(response: Response) -> dict[str, bool]:
        checks = source.liveness()
        response.status_code = 200 if checks["live"] else 503
        return checks

    for path in ("/livez", "/healthz"):
        api.add_api_route(
            path, live, methods=["GET"],
            summary="Event loop answers, intake loop running (200), else 503; never the broker",
            responses={503: {"description": "not live; the body says which condition fails"}},
        )  # fmt: skip

    @api.get(
        "/readyz",
        summary="Started, in the group (partitions or standby), broker reachable (200), else 503",
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

    @api.post(
        "/guard/resume",
        summary="Take records again after the dead-letter guard paused intake",
        description="Answers whether it was tripped (resumed: true) and the guard's state.",
    )
    async def guard_resume() -> dict[str, Any]:
        return source.resume_guard("endpoint")

    page = docs_page(api.openapi())

    @api.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    return api


def docs_page(openapi: dict[str, Any]) -> str:
    """An HTML page listing every path of ``openapi`` with its summary (no scripts, no CDN)."""
    info = openapi["info"]
    rows = "".join(
        f'<tr><td>{html.escape(method.upper())}</td><td><a href="{html.escape(path)}">'
        f"{html.escape(path)}</a></td><td>{html.escape(op.get('summary', ''))}</td></tr>\n"
        for path, operations in openapi["paths"].items()
        for method, op in operations.items()
    )
    title = html.escape(f"{info['title']} {info['version']}")
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        "<style>body{font-family:sans-serif;margin:2em}td{padding:.2em 1em}</style></head>\n"
        f"<body><h1>{title}</h1><p>{html.escape(info.get('summary', ''))}</p>\n"
        f"<table><tr><th>method</th><th>path</th><th>what it answers</th></tr>\n{rows}</table>\n"
        '<p>The OpenAPI document: <a href="/openapi.json">/openapi.json</a></p></body></html>\n'
    )


class _InLoopServer(uvicorn.Server):
    """uvicorn without its own signal handling: the processor owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class EndpointServer:
    """Runs the API as a task of the current event loop."""

    def __init__(
        self, api: FastAPI, host: str, port: int, section: str = "endpoint",
        what: str = "the operations endpoint",
    ) -> None:  # fmt: skip
        """``section`` and ``what`` name the config section and the server in errors."""
        config = uvicorn.Config(
            api, host=host, port=port, log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=int(SHUTDOWN_TIMEOUT_S),
        )  # fmt: skip
        self._server = _InLoopServer(config)
        self._task: asyncio.Task[None] | None = None
        self._host = host
        self._section, self._what = section, what
        self.port = port

    async def _bind(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        try:
            family = (await loop.getaddrinfo(self._host, self.port, type=socket.SOCK_STREAM))[0][0]
            sock = socket.create_server((self._host, self.port), family=family)
        except OSError as exc:
            raise EndpointError(
                f"{self._what} cannot listen on {self._host}:{self.port}: "
                f"{exc.strerror or exc} (set {self._section}.port, or {self._section}.enabled: "
                "false)"
            ) from exc
        sock.setblocking(False)
        return sock

    async def start(self) -> None:
        """Listen; return once uvicorn serves (``port`` is then the real one).

        Raises:
            EndpointError: The address cannot be bound (port taken, unknown host).
        """
        sock = await self._bind()
        self.port = int(sock.getsockname()[1])
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT_S):
                while not self._server.started:
                    if self._task.done():
                        raise EndpointError(f"{self._what} stopped while starting")
                    await asyncio.sleep(0.01)  # uvicorn offers no started event to wait on
        except (TimeoutError, EndpointError) as exc:
            await self.stop()
            sock.close()  # the server owns (and closes) the socket only once it serves
            if isinstance(exc, EndpointError):
                raise
            raise EndpointError(f"{self._what} did not start in time") from exc

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, SHUTDOWN_TIMEOUT_S + 1)
