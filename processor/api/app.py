"""The validation API's application and its lifetime beside (or without) the stream consumer.

:func:`build_api` makes the FastAPI application: the routes of :mod:`processor.api.routes`
behind the request guards of :func:`~processor.api.protection.protect`, which also answer
every refusal in the one error shape (a route's ``ApiProblem`` as it is, any other exception
as ``internal.error``). :func:`serving` runs it on the current event loop over a
:class:`~processor.validation.Validation` it is given: ``processor run`` passes the stream's
own (one set of upstream callers for both front doors), ``processor serve``
(:class:`ApiRunner`) builds one for the API alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from fastapi import FastAPI

from processor import __version__
from processor.api.protection import ApiProtection, protect
from processor.api.routes import ApiContext, add_routes
from processor.api.service import ValidationService
from processor.config import Settings
from processor.endpoint import EndpointServer
from processor.endpoint import build_api as build_endpoint
from processor.kafka import RecordSender
from processor.metrics import Metrics
from processor.upstream import make_session
from processor.validation import Validation, build_validation
from schemas.outcomes import ProcessorInfo

log = structlog.get_logger("processor.api")

#: The OpenAPI document's version: the API's, not the package's (the snapshot stays put).
API_VERSION = "v1"


def build_api(
    ctx: ApiContext, protection: ApiProtection, on_refusal: Callable[[str], None] | None = None
) -> FastAPI:
    """The application: the routes behind the guards (which answer every refusal, the
    routes' ``ApiProblem`` included, in the one error shape); ``on_refusal`` hears the
    code of each."""
    api = FastAPI(
        title="record-processor validation API",
        version=API_VERSION,
        summary="The stream's rules over HTTP: judge one event or a batch, or publish events.",
        docs_url=None,
        redoc_url=None,
    )

    add_routes(api, ctx)
    protect(api, protection, on_refusal=on_refusal)
    return api


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, validation: Validation, metrics: Metrics
) -> AsyncIterator[int]:
    """Serve the API over ``validation`` for the block; yields the port it listens on.

    Raises:
        KafkaUnavailable: The producer of ``/v1/records`` could not connect.
        EndpointError: The port is taken.
    """
    sender = RecordSender(settings.kafka)
    await sender.start()
    try:
        open_s = max((u.breaker.open_s for u in settings.upstreams.values()), default=1.0)
        ctx = ApiContext(
            service=ValidationService(
                validation, settings.api, settings.engine.max_record_bytes, open_s
            ),
            publisher=sender,
            input_topic=settings.kafka.topics.input,
            max_request_bytes=settings.kafka.producer_max_request_bytes,
            max_batch_items=settings.api.max_batch_items,
            request_timeout_s=settings.api.request_timeout_s,
            ready=lambda: True,
        )
        api = settings.api
        server = EndpointServer(
            build_api(ctx, api.protection, metrics.api_refused), api.host, api.port, section="api",
            what="the validation API",
        )  # fmt: skip
        await server.start()
        log.info("api.started", url=f"http://{settings.api.host}:{server.port}/v1")
        try:
            yield server.port
        finally:
            await server.stop()
    finally:
        await sender.stop()


class _ServeStatus:
    """What the operations endpoint reports for ``processor serve``: no consumer, so live and
    ready once serving; ``/status`` names the upstreams' breakers."""

    def __init__(self, instance_id: str, validation: Validation) -> None:
        self._instance_id = instance_id
        self._validation = validation

    def liveness(self) -> dict[str, bool]:
        return {"live": True}

    def readiness(self) -> dict[str, bool]:
        return {"ready": True}

    def status(self) -> dict[str, Any]:
        breakers = {n: b.state.value for n, b in sorted(self._validation.breakers.items())}
        return {"instance": self._instance_id, "mode": "serve", "breakers": breakers}

    def resume_guard(self, by: str) -> dict[str, Any]:
        return {"resumed": False, "reason": "processor serve has no intake to resume"}


class ApiRunner:
    """``processor serve``: the validation API alone, until :meth:`request_stop`; with
    ``endpoint.enabled`` also the operations endpoint (``/metrics``: the upstream calls and
    the API's refusals; ``/status``: the breakers)."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._stop = asyncio.Event()
        #: The port the API listens on (known once it is bound).
        self.port: int | None = None
        #: The port of the operations endpoint (``endpoint.enabled``; once it is bound).
        self.http_port: int | None = None

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        """Serve until stopped; return the exit code (0).

        Raises:
            KafkaUnavailable: The producer of ``/v1/records`` could not connect.
            EndpointError: The port is taken.
        """
        s = self.settings
        started = time.monotonic()
        structlog.contextvars.bind_contextvars(instance=s.instance_id)
        info = ProcessorInfo(name=s.name, version=__version__, instance=s.instance_id)
        async with make_session() as session, contextlib.AsyncExitStack() as stack:
            validation = build_validation(s, session, self.metrics, info)
            stack.push_async_callback(validation.aclose)
            if s.endpoint.enabled:
                status = _ServeStatus(s.instance_id, validation)
                ops = EndpointServer(
                    build_endpoint(status, self.metrics.registry), s.endpoint.host, s.endpoint.port
                )
                await ops.start()
                stack.push_async_callback(ops.stop)
                self.http_port = ops.port
            self.port = await stack.enter_async_context(serving(s, validation, self.metrics))
            await self._stop.wait()
        log.info("api.stopped", uptime_s=round(time.monotonic() - started, 2))
        return 0
