"""Calls to upstream HTTP APIs: the transport client (``client``) and the resilience around
it (``limiter``, ``breaker``, ``cache``, ``resilient``)."""

from processor.upstream.client import (
    Caller,
    Session,
    UpstreamClient,
    UpstreamRequest,
    UpstreamResponse,
    make_session,
)

__all__ = [
    "Caller",
    "Session",
    "UpstreamClient",
    "UpstreamRequest",
    "UpstreamResponse",
    "make_session",
]
