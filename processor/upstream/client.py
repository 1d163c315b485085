"""One upstream HTTP API on aiohttp: timeouts, auth, error translation.

:class:`UpstreamClient` makes exactly one HTTP attempt per :meth:`~UpstreamClient.call` and
translates every aiohttp failure into the :class:`~processor.errors.UpstreamError` tree
here and nowhere else. Retries, rate limits and circuit breakers wrap it from outside as
another :class:`Caller` (``processor.upstream.resilient``, which also bounds concurrency),
so this class stays the transport.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
import orjson

from processor import tracing
from processor.config import UpstreamConfig
from processor.errors import (
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

MAX_RESPONSE_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One call to make. ``idempotency_key`` (record id + check) makes retries safe.

    ``path`` is already URL-quoted; ``query`` holds (name, value) pairs, a name repeated for
    a list; ``json_body`` None sends no body (a GET never sends one).
    """

    method: str
    path: str
    json_body: Any
    idempotency_key: str
    query: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """A 2xx answer with a JSON body."""

    status: int
    body: Any
    latency_ms: float
    attempts: int = 1


class Caller(Protocol):
    """Anything that turns a request into a 2xx response or raises an UpstreamError."""

    name: str

    async def call(self, request: UpstreamRequest) -> UpstreamResponse: ...


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _encode(value: Any) -> bytes:
    """A request body as JSON bytes (orjson; the standard library for what orjson refuses,
    such as integers beyond 64 bits a custom check may send)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode()


#: The session type, for modules that hold one but must not import aiohttp.
Session = aiohttp.ClientSession


def make_session() -> aiohttp.ClientSession:
    """The HTTP session all upstream clients share (per-upstream semaphores bound it).

    Upstream answers' cookies are never kept or sent (a validation call carries no session
    state), so the session has no cookie jar to filter on every request (with the bytes
    bodies of :meth:`UpstreamClient.call`: 362 -> 312 us of client CPU per call on the bench
    machine, docs/benchmarks.md).
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class UpstreamClient:
    """The transport for one upstream: one attempt per call on a shared aiohttp session."""

    def __init__(
        self,
        name: str,
        config: UpstreamConfig,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._base_url = str(config.base_url).rstrip("/")
        self._session = session
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(
            total=config.total_timeout_s,
            sock_connect=config.connect_timeout_s,
            sock_read=config.read_timeout_s,
        )
        self._auth_headers: dict[str, str] = {}
        secret = config.auth.secret()
        if config.auth.kind == "bearer" and secret:
            self._auth_headers["Authorization"] = f"Bearer {secret}"
        elif config.auth.kind == "api_key" and secret:
            self._auth_headers[config.auth.header_name] = secret

    async def call(self, request: UpstreamRequest) -> UpstreamResponse:
        """Make one attempt.

        Raises:
            UpstreamTimeout: No answer within the configured timeouts.
            UpstreamUnavailable: Connection refused or reset, or a 5xx answer.
            UpstreamRateLimited: 429, with ``retry_after_s`` from ``Retry-After``.
            UpstreamBadResponse: Any other non-2xx answer, or a body that is not JSON.
        """
        headers = {"Idempotency-Key": request.idempotency_key, **self._auth_headers}
        tracing.inject(headers)  # the current check's span, when tracing
        url = self._base_url + request.path  # escapes kept, anything else quoted (yarl)
        body = None
        if request.method != "GET" and request.json_body is not None:
            body = _encode(request.json_body)
            headers["Content-Type"] = "application/json"
        started = self._clock()
        try:
            async with self._session.request(
                request.method, url, params=request.query or None, data=body,
                headers=headers, timeout=self._timeout,
            ) as resp:  # fmt: skip
                raw = await resp.content.read(MAX_RESPONSE_BYTES)
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"{self.name}: no answer within its timeout", upstream=self.name
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"{self.name}: {type(exc).__name__}: {exc}", upstream=self.name
            ) from exc
        latency_ms = (self._clock() - started) * 1000.0
        return self._interpret(status, raw, retry_after, latency_ms)

    def _interpret(
        self, status: int, raw: bytes, retry_after: str | None, latency_ms: float
    ) -> UpstreamResponse:
        if status == 429:
            raise UpstreamRateLimited(
                f"{self.name}: 429 Too Many Requests",
                upstream=self.name,
                retry_after_s=parse_retry_after(retry_after),
            )
        if status >= 500:
            raise UpstreamUnavailable(
                f"{self.name}: HTTP {status}", upstream=self.name, status=status
            )
        if not 200 <= status < 300:
            raise UpstreamBadResponse(
                f"{self.name}: HTTP {status}", upstream=self.name, status=status
            )
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamBadResponse(
                f"{self.name}: answer is not JSON", upstream=self.name, status=status
            ) from exc
        return UpstreamResponse(status=status, body=body, latency_ms=latency_ms)
