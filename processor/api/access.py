"""Who may come in, and how often: the API key check and the rate-limit layers, in one step.

One step because each needs the other: the per-key layer needs the caller's key name, and a
request with a bad key must still be charged to the global and endpoint layers (else a flood
of bad keys costs nothing) and answered with the rate-limit headers like every response.
So: identify the key, charge the layers (the key layer only for a proven key), then answer
429 if a layer is empty, else 401 if the key was missing or wrong, else pass the request on
with its caller named (:func:`processor.api.context.caller`). The body is not read yet.

Open paths (the probes by default) skip both: a kubelet carries no key, and a probe refused
under load would turn load into restarts.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from processor.api import context
from processor.api.auth import KeyRing, authenticate
from processor.api.errors import ApiProblem, ErrorDetail, send_problem
from processor.api.ratelimit import RateLimiter

UNROUTED = "unrouted"  # the one endpoint bucket every unknown path shares


def endpoint_of(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """``"METHOD /route/{template}"`` of the route ``scope`` matches, else :data:`UNROUTED`."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return f"{scope['method']} {getattr(route, 'path', '')}"
    return UNROUTED


class Access:
    """Authenticate (when keys are configured) and rate-limit; refuse with 429 or 401."""

    def __init__(
        self,
        app: ASGIApp,
        ring: KeyRing | None,
        limiter: RateLimiter,
        routes: Sequence[BaseRoute],
        open_paths: frozenset[str],
    ) -> None:
        self.app = app
        self.ring = ring
        self.limiter = limiter
        self.routes = routes  # the application's own list: routes added later are seen
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.open_paths:
            context.set_caller(scope, None)
            await self.app(scope, receive, send)
            return
        refusal: ApiProblem | None = None
        name: str | None = None
        if self.ring is not None:
            try:
                name = authenticate(self.ring, Headers(scope=scope))
            except ApiProblem as problem:
                refusal = problem
        context.set_caller(scope, name)
        decision = self.limiter.check(endpoint_of(self.routes, scope), name)
        for header, value in decision.headers().items():
            context.add_response_header(scope, header, value)
        if not decision.allowed:
            assert decision.tightest is not None
            layer = decision.tightest.layer
            refusal = ApiProblem(
                429, "rate_limited", "too many requests; retry after the Retry-After seconds",
                [ErrorDetail(code=f"rate_limited.{layer}", message=f"the {layer} limit is spent")],
            )  # fmt: skip
        if refusal is not None:
            await send_problem(scope, receive, send, refusal)
            return
        await self.app(scope, receive, send)
