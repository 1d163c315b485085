"""Tests of the upstream HTTP client against the real simulator on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest

from devtools.simulator import RunningSimulator, start_simulator
from devtools.simulator.verdicts import OutageMode, RetryAfterFormat, SimulatorSettings
from processor.config import AuthConfig, UpstreamConfig
from processor.errors import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from processor.upstream.client import (
    UpstreamClient,
    UpstreamRequest,
    UpstreamResponse,
    make_session,
    parse_retry_after,
)
from schemas.outcomes import ReasonCode

EMAIL = "/v1/email/verify"
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)

StartSimulator = Callable[[SimulatorSettings], Awaitable[RunningSimulator]]


@pytest.fixture
async def simulators() -> AsyncIterator[StartSimulator]:
    """A factory of in-process simulators that closes every one it started."""
    started: list[RunningSimulator] = []

    async def start(settings: SimulatorSettings) -> RunningSimulator:
        sim = await start_simulator(settings)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real aiohttp client session, closed after the test."""
    async with aiohttp.ClientSession() as client:
        yield client


def _client(session: aiohttp.ClientSession, url: str, **config: Any) -> UpstreamClient:
    return UpstreamClient("email", UpstreamConfig(base_url=url, **config), session)


def _request(key: str = "rec-1:email_deliverable", body: Any = None) -> UpstreamRequest:
    return UpstreamRequest(
        method="POST",
        path=EMAIL,
        json_body={"email": "alice@example.com"} if body is None else body,
        idempotency_key=key,
    )


def _stats(sim: RunningSimulator) -> dict[str, Any]:
    return sim.state.stats.to_json()


async def _fails_with(client: UpstreamClient, request: UpstreamRequest) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await client.call(request)
    return caught.value


async def test_a_200_answer_is_parsed_into_a_response(
    simulators: StartSimulator, session: aiohttp.ClientSession
) -> None:
    """A 2xx JSON answer comes back as an UpstreamResponse with the decoded body."""
    sim = await simulators(SimulatorSettings())
    response = await _client(session, sim.url).call(_request())
    assert isinstance(response, UpstreamResponse)
    assert response.status == 200
    assert response.body == {"email": "alice@example.com", "deliverable": True, "reason": None}
    assert response.attempts == 1


async def test_the_service_session_sends_json_bodies_orjson_refuses(
    simulators: StartSimulator,
) -> None:
    """On the service's own session a body with an integer beyond 64 bits still goes out as
    JSON (the standard encoder takes over), and the answer is parsed."""
    sim = await simulators(SimulatorSettings())
    async with make_session() as own:
        body = {"email": "alice@example.com", "customer_no": 2**70}
        response = await _client(own, sim.url).call(_request(body=body))
    assert response.body["deliverable"] is True
    assert _stats(sim)["requests_total"] == 1


async def test_every_call_sends_its_idempotency_key(
    simulators: StartSimulator, session: aiohttp.ClientSession
) -> None:
    """The Idempotency-Key header is sent on every call: two keys over three calls."""
    sim = await simulators(SimulatorSettings())
    client = _client(session, sim.url)
    for key in ("rec-1:a", "rec-1:a", "rec-2:a"):
        await client.call(_request(key))
    stats = _stats(sim)
    assert stats["requests_total"] == 3
    assert stats["idempotency_keys_distinct"] == 2
    assert stats["requests_without_idempotency_key"] == 0


@pytest.mark.parametrize(
    ("auth", "authorized"),
    [
        (AuthConfig(), 0),
        (AuthConfig(kind="bearer", token="t0ken"), 1),
        (AuthConfig(kind="api_key", token="t0ken"), 1),
    ],
    ids=["none", "bearer", "api-key"],
)
async def test_configured_credentials_are_sent(
    simulators: StartSimulator,
    session: aiohttp.ClientSession,
    auth: AuthConfig,
    authorized: int,
) -> None:
    """Bearer and API-key auth add a credential header the upstream counts as authorized."""
    sim = await simulators(SimulatorSettings())
    await _client(session, sim.url, auth=auth).call(_request())
    assert _stats(sim)["authorized_requests"] == authorized


async def test_a_5xx_answer_is_upstream_unavailable(
    simulators: StartSimulator, session: aiohttp.ClientSession
) -> None:
    """An injected 503 is UpstreamUnavailable, retriable, with the status kept."""
    sim = await simulators(SimulatorSettings(error_rate=1.0))
    error = await _fails_with(_client(session, sim.url), _request())
    assert isinstance(error, UpstreamUnavailable)
    assert error.retriable is True
    assert error.reason is ReasonCode.UPSTREAM_UNAVAILABLE
    assert error.status == 503
    assert error.upstream == "email"


@pytest.mark.parametrize("retry_format", ["seconds", "http-date"])
async def test_a_429_is_rate_limited_with_retry_after_parsed(
    simulators: StartSimulator, session: aiohttp.ClientSession, retry_format: RetryAfterFormat
) -> None:
    """A 429 is UpstreamRateLimited with retry_after_s read from either header format."""
    sim = await simulators(
        SimulatorSettings(
            rate_limit_rps=0.001,
            rate_limit_burst=1,
            retry_after_s=7,
            retry_after_format=retry_format,
        )
    )
    client = _client(session, sim.url)
    await client.call(_request())  # takes the only token
    error = await _fails_with(client, _request())
    assert isinstance(error, UpstreamRateLimited)
    assert error.retriable is True
    assert error.reason is ReasonCode.UPSTREAM_RATE_LIMITED
    assert error.status == 429
    assert error.retry_after_s is not None
    if retry_format == "seconds":
        assert error.retry_after_s == 7.0
    else:  # an HTTP-date rounded up to the next whole second, read against our own clock
        assert 5.0 <= error.retry_after_s <= 8.5


async def test_no_answer_within_the_total_timeout_is_upstream_timeout(
    simulators: StartSimulator, session: aiohttp.ClientSession
) -> None:
    """A hanging upstream turns into UpstreamTimeout after total_timeout_s."""
    sim = await simulators(SimulatorSettings(timeout_rate=1.0, hang_s=30.0))
    client = _client(session, sim.url, total_timeout_s=0.1)
    error = await _fails_with(client, _request())
    assert isinstance(error, UpstreamTimeout)
    assert error.retriable is True
    assert error.reason is ReasonCode.UPSTREAM_TIMEOUT


@pytest.mark.parametrize(("mode", "status"), [("refuse", None), ("503", 503)])
async def test_an_outage_is_upstream_unavailable(
    simulators: StartSimulator, session: aiohttp.ClientSession, mode: OutageMode, status: int | None
) -> None:
    """Dropped connections and outage 503s are both UpstreamUnavailable and retriable."""
    sim = await simulators(SimulatorSettings(outage_mode=mode))
    sim.update_settings({"outage_for_s": 60})
    error = await _fails_with(_client(session, sim.url), _request())
    assert isinstance(error, UpstreamUnavailable)
    assert error.retriable is True
    assert error.status == status


async def test_a_400_answer_is_a_bad_response_and_not_retriable(
    simulators: StartSimulator, session: aiohttp.ClientSession
) -> None:
    """A request the upstream refuses as malformed is UpstreamBadResponse, never retried."""
    sim = await simulators(SimulatorSettings())
    error = await _fails_with(_client(session, sim.url), _request(body={"mail": "x@y.z"}))
    assert isinstance(error, UpstreamBadResponse)
    assert error.retriable is False
    assert error.reason is ReasonCode.UPSTREAM_BAD_RESPONSE
    assert error.status == 400


async def test_a_closed_port_is_upstream_unavailable(session: aiohttp.ClientSession) -> None:
    """Connection refused is UpstreamUnavailable and retriable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await _fails_with(_client(session, f"http://127.0.0.1:{port}"), _request())
    assert isinstance(error, UpstreamUnavailable)
    assert error.retriable is True
    assert error.status is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("Sat, 01 Mar 2025 12:01:00 -0000", 60.0),
    ],
    ids=[
        "absent",
        "empty",
        "zero",
        "seconds",
        "padded-seconds",
        "garbage",
        "negative",
        "fractional",
        "future-date",
        "past-date-clamped",
        "date-without-zone",
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(
    value: str | None, expected: float | None
) -> None:
    """Retry-After is delta-seconds or an HTTP-date; anything else is None, the past is 0."""
    assert parse_retry_after(value, now=NOW) == expected
