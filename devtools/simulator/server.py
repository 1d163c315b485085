"""The upstream API simulator: a real HTTP server on 127.0.0.1 standing in for three APIs.

Used by the demo, integration tests, benchmarks and fault tests. ``devtools.simulator.verdicts``
documents and decides (purely) the endpoints, verdicts, settings and faults; this module
serves them, and runs in-process (``start_simulator``) or on its own::

    python -m devtools.simulator --port 0 --latency-ms 5 --outage-window 10:20

which prints ``{"event": "simulator.listening", "url": "http://127.0.0.1:<port>"}`` as one
line once it listens, and stops cleanly on SIGTERM/SIGINT.

Control endpoints, never counted in the stats: ``GET /healthz``; ``GET /_control`` (the
settings); ``POST /_control`` (change the fields given; ``outage_for_s`` starts an outage
now, 0 ends it); ``POST /_reset`` (zero the stats and empty the request log); ``GET /_stats``,
which returns::

    {"requests_total": int, "in_flight": int, "max_in_flight": int,
     "by_endpoint": {path: {"200" | "429" | ... | "refused": count}},
     "idempotency_keys_distinct": int, "idempotency_keys_capped": bool,
     "requests_without_idempotency_key": int, "authorized_requests": int,
     "traced_requests": int (with a W3C traceparent header),
     "by_second": {path: {"<epoch second>": count}},
     "first_request_at": float | null, "last_request_at": float | null,
     "last_429_at": {path: float}}

and ``GET /_requests?path=<path>``, the log of each counted request in arrival order, as
``[arrival, status]``: arrival in monotonic seconds since the server started, taken before
faults and latency; status an int, ``"refused"``, or null while in flight or if cancelled::

    {"path": path, "requests": [[float, int | "refused" | null], ...]}

or, without ``path``, ``{"by_path": {path: [[float, status], ...]}}``. Unknown paths are
counted and logged under ``"other"``; ``devtools.simulator.stats`` owns the stats and their bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from devtools.simulator.batch import answer_batch
from devtools.simulator.stats import SimulatorStats, Status
from devtools.simulator.verdicts import (
    ANSWERS,
    BATCH_SUFFIX,
    LATENCY_DISTRIBUTIONS,
    OUTAGE_MODES,
    RETRY_AFTER_FORMATS,
    STOCK_ROUTE,
    Fault,
    FaultPlanner,
    SettingsError,
    SimulatorSettings,
    answer_stock,
    api_route,
    retry_after_header,
)

LOOPBACK_HOST: Final = "127.0.0.1"
OTHER_PATH: Final = "other"
_CONTROL_PATHS: Final = frozenset({"/_stats", "/_requests", "/_control", "/_reset", "/healthz"})
#: ``<path>/batch`` -> the single endpoint's answer, for each POST endpoint.
BATCH_ANSWERS: Final = {path + BATCH_SUFFIX: answer for path, answer in ANSWERS.items()}

Sleep = Callable[[float], Awaitable[None]]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass
class SimulatorState:
    """One simulator's live state; ``hanging`` holds requests to cancel on close."""

    planner: FaultPlanner
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    sleep: Sleep
    stats: SimulatorStats = dataclasses.field(default_factory=SimulatorStats)
    hanging: set[asyncio.Task[Any] | None] = dataclasses.field(default_factory=set)
    started_at_s: float = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        """Start the request log's clock now."""
        self.started_at_s = self.clock()

    @property
    def settings(self) -> SimulatorSettings:
        """The settings in force."""
        return self.planner.settings


STATE_KEY: Final = web.AppKey("simulator_state", SimulatorState)


def _error(status: int, why: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": why}, status=status, headers=headers)


async def _hang(state: SimulatorState, duration_s: float) -> None:
    """Sleep ``duration_s``, registered so that closing the simulator can cancel it."""
    task = asyncio.current_task()
    state.hanging.add(task)
    try:
        await state.sleep(duration_s)
    finally:
        state.hanging.discard(task)


async def _with_faults(
    request: web.Request, handler: _Handler, state: SimulatorState
) -> web.StreamResponse | None:
    """Answer a request, through the fault plan if it is an API call; None: drop the connection."""
    route = api_route(request.path)
    if route is None:
        return await handler(request)
    settings = state.settings
    match state.planner.plan(route):
        case Fault.OUTAGE if settings.outage_mode == "refuse":
            return None
        case Fault.OUTAGE:
            return _error(503, "outage")
        case Fault.RATE_LIMITED:
            retry_after = retry_after_header(settings, state.wall_clock())
            return _error(429, "rate_limited", {"Retry-After": retry_after})
        case Fault.TIMEOUT:
            await _hang(state, settings.hang_s)
            return _error(504, "timeout")
        case Fault.ERROR:
            return _error(503, "injected")
    delay_s = state.planner.latency_s()
    if delay_s > 0:
        await state.sleep(delay_s)
    return await handler(request)


@web.middleware
async def _api_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Count every non-control request and put API requests through the fault plan."""
    if request.path in _CONTROL_PATHS:
        return await handler(request)
    state = request.app[STATE_KEY]
    path = api_route(request.path) or OTHER_PATH
    since_start_s = state.clock() - state.started_at_s
    logged = state.stats.started(path, request.headers, state.wall_clock(), since_start_s)
    status: Status | None = None
    try:
        response = await _with_faults(request, handler, state)
        if response is None:
            status = "refused"
            if request.transport is not None:
                request.transport.close()
            # Never sent: aiohttp's write to the closed transport fails and it moves on.
            return web.Response(status=503)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        state.stats.finished(logged, status, state.wall_clock())


async def _answer(request: web.Request) -> web.Response:
    try:
        body: object = json.loads(await request.read())
        return web.json_response(ANSWERS[request.path](body))
    except json.JSONDecodeError:
        return _error(400, "body is not valid JSON")
    except ValueError as exc:  # MalformedRequestError, or a body that is not UTF-8
        return _error(400, str(exc))


async def _batch(request: web.Request) -> web.Response:
    try:
        body: object = json.loads(await request.read())
    except json.JSONDecodeError:
        return _error(400, "body is not valid JSON")
    except ValueError as exc:  # a body that is not UTF-8
        return _error(400, str(exc))
    max_items = request.app[STATE_KEY].settings.batch_max_items
    status, answer = answer_batch(BATCH_ANSWERS[request.path], body, max_items)
    return web.json_response(answer, status=status)


async def _stock(request: web.Request) -> web.Response:
    status, body = answer_stock(request.match_info["sku"])
    return web.json_response(body, status=status)


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _control(request: web.Request) -> web.Response:
    planner = request.app[STATE_KEY].planner
    if request.method == "GET":
        return web.json_response(planner.settings.to_json())
    try:
        changes: object = json.loads(await request.read())
        if not isinstance(changes, dict):
            return _error(400, "body must be a JSON object")
        return web.json_response(planner.update(changes).to_json())
    except json.JSONDecodeError:
        return _error(400, "body is not valid JSON")
    except ValueError as exc:  # SettingsError, or a body that is not UTF-8
        return _error(400, str(exc))


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].stats.to_json())


async def _get_requests(request: web.Request) -> web.Response:
    stats = request.app[STATE_KEY].stats
    return web.json_response(stats.requests_json(request.query.get("path")))


async def _post_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].stats.reset()
    return web.json_response({"status": "ok"})


def build_app(state: SimulatorState) -> web.Application:
    """Return the simulator's aiohttp application serving ``state``."""
    app = web.Application(middlewares=[_api_middleware])
    app[STATE_KEY] = state
    app.router.add_routes([web.post(path, _answer) for path in ANSWERS])
    app.router.add_routes([web.post(path, _batch) for path in BATCH_ANSWERS])
    app.router.add_get(STOCK_ROUTE, _stock)
    app.router.add_get("/healthz", _healthz)
    app.router.add_routes([web.get("/_control", _control), web.post("/_control", _control)])
    app.router.add_get("/_stats", _get_stats)
    app.router.add_get("/_requests", _get_requests)
    app.router.add_post("/_reset", _post_reset)
    return app


@dataclasses.dataclass
class RunningSimulator:
    """A simulator listening on 127.0.0.1 at ``url``; ``close`` stops it.

    Attributes:
        url: Base URL, ``http://127.0.0.1:<port>``.
        state: Live settings (``state.settings``), fault planner and stats.
    """

    url: str
    state: SimulatorState
    _runner: web.AppRunner

    def update_settings(self, changes: Mapping[str, object]) -> SimulatorSettings:
        """Apply a change set as ``POST /_control`` would, in-process."""
        return self.state.planner.update(changes)

    async def close(self) -> None:
        """Stop listening, cut hanging requests short, and wait for the rest to finish."""
        for task in self.state.hanging:
            if task is not None:
                task.cancel()
        await self._runner.cleanup()


async def start_simulator(
    settings: SimulatorSettings,
    host: str = LOOPBACK_HOST,
    port: int = 0,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    sleep: Sleep = asyncio.sleep,
) -> RunningSimulator:
    """Start a simulator on ``host:port`` (port 0 picks a free port) and return it.

    Args:
        settings: The initial knobs.
        host: Must be 127.0.0.1; the simulator never listens anywhere else.
        port: TCP port, 0 for any free one.
        clock: Monotonic seconds, for rate limits, outages and the request log.
        wall_clock: Epoch seconds, for stats and ``Retry-After`` dates.
        rng: The only source of chance; defaults to ``random.Random(settings.seed)``.
        sleep: Awaited for latency and hangs.

    Raises:
        ValueError: ``host`` is not 127.0.0.1.
    """
    if host != LOOPBACK_HOST:
        raise ValueError(f"the simulator listens on {LOOPBACK_HOST} only, not {host!r}")
    planner = FaultPlanner(settings, clock=clock, rng=rng or random.Random(settings.seed))
    state = SimulatorState(planner, clock=clock, wall_clock=wall_clock, sleep=sleep)
    runner = web.AppRunner(build_app(state), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    return RunningSimulator(f"http://{host}:{bound_port}", state, runner)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.simulator",
        description="Serve the simulated upstream APIs on 127.0.0.1.",
    )
    parser.add_argument("--host", default=LOOPBACK_HOST, choices=[LOOPBACK_HOST])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float)
    parser.add_argument("--latency-distribution", choices=LATENCY_DISTRIBUTIONS)
    parser.add_argument("--error-rate", type=float)
    parser.add_argument("--timeout-rate", type=float)
    parser.add_argument("--hang-s", type=float)
    parser.add_argument("--rate-limit-rps", type=float, help="0 turns rate limiting off")
    parser.add_argument("--rate-limit-burst", type=int)
    parser.add_argument("--retry-after-s", type=int)
    parser.add_argument("--retry-after-format", choices=RETRY_AFTER_FORMATS)
    parser.add_argument("--outage-window", dest="outage_windows", action="append")
    parser.add_argument("--outage-mode", choices=OUTAGE_MODES)
    parser.add_argument("--batch-max-items", type=int)
    parser.add_argument("--seed", type=int)
    return parser


async def _serve(settings: SimulatorSettings, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    simulator = await start_simulator(settings, host, port)
    try:
        line = json.dumps({"event": "simulator.listening", "url": simulator.url})
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await simulator.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGTERM/SIGINT; return the exit status."""
    parser = _parser()
    args = vars(parser.parse_args(argv))
    host, port = args.pop("host"), args.pop("port")
    try:
        settings = SimulatorSettings().with_changes(
            {name: value for name, value in args.items() if value is not None}
        )
    except SettingsError as exc:
        parser.error(str(exc))
    asyncio.run(_serve(settings, host, port))
    return 0
