"""One upstream HTTP API's section: where it is, its credentials, how hard we may push it,
how long we wait, retries, the circuit breaker and the response cache."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    model_validator,
)

from processor.config_base import Frozen, invalid


class AuthConfig(Frozen):
    """Credentials for one upstream. The secret comes from ``token`` or ``token_file``."""

    kind: Literal["none", "bearer", "api_key"] = "none"
    token: SecretStr | None = None
    token_file: Path | None = None
    header_name: str = "X-Api-Key"

    @model_validator(mode="after")
    def _has_secret(self) -> AuthConfig:
        if self.kind != "none" and self.token is None and self.token_file is None:
            raise invalid("AuthConfig", [((), f"kind {self.kind!r} needs token or token_file")])
        return self

    def secret(self) -> str | None:
        """The credential, read from ``token_file`` if given (at start-up, once)."""
        if self.kind == "none":
            return None
        if self.token is not None:
            return self.token.get_secret_value()
        assert self.token_file is not None
        return self.token_file.read_text().strip()


class RetryConfig(Frozen):
    """Retries of transient failures (timeouts, connection errors, 5xx, 429).

    Backoff is exponential with full jitter: attempt n waits uniform(0, min(backoff_max_s,
    backoff_initial_s * 2**(n-1))), or the upstream's Retry-After when it is longer. The
    budget counts time spent calling and backing off, not time waiting for an open breaker:
    a record is dead-lettered only if it failed while the upstream was answering.
    """

    max_attempts: int = Field(default=8, ge=1)
    budget_s: float = Field(default=30.0, gt=0)
    backoff_initial_s: float = Field(default=0.05, gt=0)
    backoff_max_s: float = Field(default=2.0, gt=0)


class BreakerConfig(Frozen):
    """The circuit breaker: trips on a failure rate or a run of failures, then probes.

    Failures are timeouts, connection errors and 5xx (not 429, not other 4xx). Open, it
    makes callers wait (their partitions are paused) for ``open_s``; then ``half_open_probes``
    calls go through, and all must succeed to close it.
    """

    enabled: bool = True
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    window_s: float = Field(default=10.0, gt=0)
    min_calls: int = Field(default=20, ge=1)
    consecutive_failures: int = Field(default=10, ge=1)
    open_s: float = Field(default=2.0, gt=0)
    half_open_probes: int = Field(default=1, ge=1)


class CacheConfig(Frozen):
    """Answers kept by request (method, path, body): duplicates and hot keys are free."""

    ttl_s: float = Field(default=300.0, ge=0, description="0 turns the cache off")
    max_entries: int = Field(default=100_000, ge=1)


class UpstreamConfig(Frozen):
    """One upstream HTTP API: where it is, how hard we may push it, how long we wait."""

    base_url: AnyHttpUrl
    max_concurrency: int = Field(default=64, ge=1)
    rate_limit_rps: float | None = Field(default=None, gt=0, description="None: no limit")
    rate_limit_burst: int = Field(default=1, ge=1)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    read_timeout_s: float = Field(default=5.0, gt=0)
    total_timeout_s: float = Field(default=10.0, gt=0)
    auth: AuthConfig = AuthConfig()
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    cache: CacheConfig = CacheConfig()
