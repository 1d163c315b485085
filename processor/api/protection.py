"""Request guards of the validation API, and their config section (``api.protection``).

:func:`protect` installs every guard on an application; :class:`ApiProtection` is its config
section, every field defaulted so ``ApiProtection()`` is valid. A request passes the guards
in this order, outermost first; each refuses in the one error shape
(:mod:`processor.api.errors`) without running the ones after it:

1. :class:`~processor.api.context.RequestContext`: request id, log binding, the headers every
   response carries, the last-resort 500.
2. :class:`~processor.api.limits.Deadline`: ``timeout_s`` for everything below (504).
3. :class:`~processor.api.access.Access`: API key (401) and rate-limit layers (429).
4. :class:`~processor.api.limits.BodyLimit`: the body read up to ``max_body_bytes`` (413)
   before anything parses it; the raw bytes kept for the next two.
5. :class:`~processor.api.signing.SignedRequests`: the HMAC signature (401), when enabled.
6. :class:`~processor.api.idempotency.IdempotentPosts`: ``Idempotency-Key`` replays (409/422).

Then FastAPI, whose own refusals (validation 422, 404, 405) and unhandled exceptions are
turned into the same shape by the handlers :func:`~processor.api.errors.install_handlers` adds.
The key ring and signing secret are read here, once: a missing file or variable is a
:class:`~processor.errors.ConfigError` at start-up, not a refusal of every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI
from pydantic import Field, field_validator

from processor.api.access import Access
from processor.api.auth import ApiKeys, load_key_ring
from processor.api.context import RequestContext
from processor.api.errors import install_handlers
from processor.api.idempotency import Idempotency, IdempotencyStore, IdempotentPosts
from processor.api.limits import BodyLimit, Deadline
from processor.api.ratelimit import RateLimiter, RateLimits
from processor.api.signing import RequestSigning, SignedRequests, load_check
from processor.config_base import Frozen


class ApiProtection(Frozen):
    """Body limit, API keys, request signing, rate limits, idempotency, timeouts."""

    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="a larger request body is refused (413)"
    )
    timeout_s: float = Field(
        default=30.0, gt=0,
        description="every request answers within this (504); keep it above the batch deadline",
    )  # fmt: skip
    open_paths: tuple[str, ...] = Field(
        default=("/healthz", "/readyz", "/livez"),
        description="no key, signature or rate limit asked (probes)",
    )
    auth: ApiKeys = ApiKeys()
    signing: RequestSigning = RequestSigning()
    rate_limits: RateLimits = RateLimits()
    idempotency: Idempotency = Idempotency()

    @field_validator("open_paths")
    @classmethod
    def _paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"{path!r}: a path as requested, starting with /")
        return value


def protect(
    app: FastAPI,
    settings: ApiProtection,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_refusal: Callable[[str], None] | None = None,
) -> None:
    """Install the guards on ``app`` (once, before it serves).

    Args:
        app: The application; its routes may be added before or after.
        settings: The ``api.protection`` section.
        clock: Monotonic seconds for the rate limits and idempotency expiry (tests move it).
        on_refusal: Hears the ``error`` code of every response of status >= 400
            (:meth:`processor.metrics.Metrics.api_refused`).

    Raises:
        ConfigError: The key hashes or the signing secret cannot be read.
    """
    if getattr(app.state, "protected", False):
        raise RuntimeError("protect() was already called on this application")
    app.state.protected = True
    install_handlers(app)
    open_paths = frozenset(settings.open_paths)
    ring = load_key_ring(settings.auth)
    check = load_check(settings.signing)
    # add_middleware wraps what is there: added innermost first
    if settings.idempotency.enabled:
        app.add_middleware(IdempotentPosts, store=IdempotencyStore(settings.idempotency, clock))
    if check is not None:
        app.add_middleware(SignedRequests, check=check, open_paths=open_paths)
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    limiter = RateLimiter(settings.rate_limits, clock)
    app.add_middleware(
        Access, ring=ring, limiter=limiter, routes=app.router.routes, open_paths=open_paths
    )
    app.add_middleware(Deadline, timeout_s=settings.timeout_s)
    app.add_middleware(RequestContext, on_refusal=on_refusal)
