"""Calls to upstream HTTP APIs: the transport client and (later) its resilience policies."""

from processor.upstream.client import (
    Caller,
    UpstreamClient,
    UpstreamRequest,
    UpstreamResponse,
    make_session,
)

__all__ = ["Caller", "UpstreamClient", "UpstreamRequest", "UpstreamResponse", "make_session"]
