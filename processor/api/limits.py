"""Limits at the boundary: the request body's size (413) and the request's time (504).

:class:`BodyLimit` reads the whole body before anything downstream runs, counting the bytes
as they arrive: a ``Content-Length`` over ``max_body_bytes`` is refused without reading a
byte, a chunked body as soon as its running count passes the limit. Only a body within the
limit reaches the application, handed over from memory, so an oversized one is never parsed
(nor hashed, nor checked for a signature). Starlette's own ``RequestBodyLimitMiddleware``
counts lazily, as the route reads, and answers in plain text; reading up front also gives
the signature and idempotency guards the exact bytes they need (:func:`context.raw_body`).
Nothing beyond the limit is kept: uvicorn reads and drops the rest of a body sent anyway, to
keep the connection usable, so the client gets a clean 413 rather than a reset connection
(``Connection: close`` with unread data makes TCP reset, and many clients then lose the 413).

:class:`Deadline` bounds every request, the body upload included (a slow client cannot hold
a connection open past it): 504 ``request.timeout`` if nothing was answered by then; a
response already under way is cut off (the client sees a truncated response, not a 504).
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processor.api import context
from processor.api.errors import ApiProblem, send_problem


def too_large(max_body_bytes: int) -> ApiProblem:
    return ApiProblem(413, "request.too_large", f"the body is over {max_body_bytes} bytes")


def declared_length(headers: Headers) -> int | None:
    """``Content-Length`` as a number (None when absent or not a plain non-negative number)."""
    value = headers.get("content-length")
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


class BodyLimit:
    """Read the body up to ``max_body_bytes`` before the application runs, or answer 413."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(Headers(scope=scope))
        if length is not None and length > self.max_body_bytes:
            await send_problem(scope, receive, send, too_large(self.max_body_bytes))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_problem(scope, receive, send, too_large(self.max_body_bytes))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        context.set_raw_body(scope, body)
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` once, then waits on the real one (disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class Deadline:
    """Answer 504 ``request.timeout`` when a request is not done within ``timeout_s``."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                await self.app(scope, receive, watched)
        except TimeoutError:
            if started or not deadline.expired():  # too late for a 504, or not our timeout:
                raise  # the request context logs it and answers 500 (or ends the response)
            message = f"the request did not finish within {self.timeout_s:g} s"
            await send_problem(scope, receive, send, ApiProblem(504, "request.timeout", message))
