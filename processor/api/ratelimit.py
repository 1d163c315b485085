"""Layered rate limits of the API: one token bucket for all requests, one per API key, one
per endpoint.

Each layer is a token bucket: ``burst`` tokens at most (a new bucket starts full), refilled
at ``rate_per_s``. A request needs a token from every layer that applies to it (``total``
always; ``per_key`` when it proved a key; ``per_endpoint``, or its ``endpoints`` override, for
the route it matched: ``"POST /v1/validate/batch"``; unknown paths share one bucket). All or
nothing: when any layer is empty the request is refused with 429 and no layer is charged, so
refused requests do not drain the others.

Every response carries the state of the tightest layer (fewest whole tokens left, then the
longest wait): ``X-RateLimit-Limit`` (its burst: the most requests it lets through at once),
``X-RateLimit-Remaining`` (whole tokens left after this request) and ``X-RateLimit-Reset``
(seconds until it is full again, rounded up: a delay, not a date, so clocks need not agree).
A 429 adds ``Retry-After``: seconds until every empty layer has a token again (at least 1).

Not :class:`processor.upstream.limiter.TokenBucket`: there we are the client and wait our
turn so as never to exceed a third party's limit; here we are the server and refuse at once,
saying when to come back. The clock is injected, so tests move time instead of sleeping.

The buckets live in the process: with N instances behind a balancer a client may get up to
N times each limit, so configure each instance's share (the limit divided by N). A limit
shared across instances needs a shared store (Redis, say), a later step. Memory is bounded:
buckets exist per configured key name and per route, not per caller address or path seen.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import Field, field_validator

from processor.config_base import Frozen

_EPSILON = 1e-9  # float refill rounding must not refuse a token that is due
_ENDPOINT = re.compile(r"[A-Z]+ /\S*")


class RateLayer(Frozen):
    """One layer's bucket: ``rate_per_s`` refill, ``burst`` capacity."""

    rate_per_s: float = Field(gt=0)
    burst: int = Field(ge=1)


class RateLimits(Frozen):
    """``api.protection.rate_limits``: null turns a layer off."""

    # The defaults are a ceiling against a runaway client, above what one process serves
    # with real upstreams; set them from the upstreams' own limits and each caller's share.
    total: RateLayer | None = Field(
        default=RateLayer(rate_per_s=2000, burst=4000), description="the global layer"
    )
    per_key: RateLayer | None = RateLayer(rate_per_s=500, burst=1000)
    per_endpoint: RateLayer | None = RateLayer(rate_per_s=1000, burst=2000)
    endpoints: dict[str, RateLayer] = Field(
        default={}, description='per-endpoint overrides: {"POST /v1/validate/batch": {...}}'
    )

    @field_validator("endpoints")
    @classmethod
    def _method_and_path(cls, value: dict[str, RateLayer]) -> dict[str, RateLayer]:
        for name in value:
            if not _ENDPOINT.fullmatch(name):
                raise ValueError(f"{name!r}: an endpoint is 'METHOD /path' as routed")
        return value


class Bucket:
    """A token bucket read and charged at moments the caller gives."""

    __slots__ = ("_at", "burst", "rate_per_s", "tokens")

    def __init__(self, layer: RateLayer, now: float) -> None:
        self.rate_per_s = layer.rate_per_s
        self.burst = layer.burst
        self.tokens = float(layer.burst)
        self._at = now

    def refill(self, now: float) -> float:
        """Tokens held at ``now``."""
        if now > self._at:
            self.tokens = min(float(self.burst), self.tokens + (now - self._at) * self.rate_per_s)
            self._at = now
        return self.tokens


@dataclass(frozen=True)
class Quota:
    """What one layer says about one request."""

    layer: str
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int  # 0 when the layer had a token


def _quota(layer: str, bucket: Bucket) -> Quota:
    tokens, rate = bucket.tokens, bucket.rate_per_s
    return Quota(
        layer=layer,
        limit=bucket.burst,
        remaining=max(0, math.floor(tokens + _EPSILON)),
        reset_s=max(0, math.ceil((bucket.burst - tokens) / rate - _EPSILON)),
        retry_after_s=0 if tokens >= 1 - _EPSILON else max(1, math.ceil((1 - tokens) / rate)),
    )


@dataclass(frozen=True)
class Decision:
    """Whether a request may pass, and the tightest layer's state for its headers."""

    allowed: bool
    tightest: Quota | None  # None: no layer applies

    def headers(self) -> dict[str, str]:
        q = self.tightest
        if q is None:
            return {}
        headers = {"X-RateLimit-Limit": str(q.limit), "X-RateLimit-Remaining": str(q.remaining),
                   "X-RateLimit-Reset": str(q.reset_s)}  # fmt: skip
        if not self.allowed:
            headers["Retry-After"] = str(q.retry_after_s)
        return headers


class RateLimiter:
    """The layers' buckets, created as keys and endpoints are first seen."""

    def __init__(self, settings: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._total = Bucket(settings.total, clock()) if settings.total else None
        self._keys: dict[str, Bucket] = {}
        self._endpoints: dict[str, Bucket] = {}

    def _bucket(
        self, table: dict[str, Bucket], name: str, layer: RateLayer | None
    ) -> Bucket | None:
        if layer is None:
            return None
        bucket = table.get(name)
        if bucket is None:
            bucket = table[name] = Bucket(layer, self._clock())
        return bucket

    def check(self, endpoint: str, key: str | None) -> Decision:
        """Charge one token to every layer for a request to ``endpoint`` by ``key``, or none."""
        s = self._settings
        candidates = {
            "total": self._total,
            "key": self._bucket(self._keys, key, s.per_key) if key is not None else None,
            "endpoint": self._bucket(
                self._endpoints, endpoint, s.endpoints.get(endpoint, s.per_endpoint)
            ),
        }
        now = self._clock()
        layers = {name: b for name, b in candidates.items() if b is not None}
        levels = [bucket.refill(now) for bucket in layers.values()]
        allowed = all(level >= 1 - _EPSILON for level in levels)
        if allowed:
            for bucket in layers.values():
                bucket.tokens -= 1
        quotas = [_quota(name, bucket) for name, bucket in layers.items()]
        tightest = min(quotas, key=lambda q: (q.remaining, -q.retry_after_s, q.limit), default=None)
        return Decision(allowed, tightest)
