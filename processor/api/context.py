"""Each request's context: its id, the state the guards share, and the last-resort handler.

:class:`RequestContext` is the outermost guard. A request keeps a sane incoming
``X-Request-ID`` (1 to 128 of ``A-Z a-z 0-9 . _ : -``: a caller's trace continues) or gets a
fresh one (uuid4, hex); the id is ``request.state.request_id``, bound in structlog's context
variables for every log line written while the request runs, in every error body, and the
``X-Request-ID`` of every response.

The guards inside share per-request state through the accessors below (the raw body, the
caller's key) and add headers every response must carry (the rate-limit headers) with
:func:`add_response_header`: they are written here when the response starts, so a guard's
own refusal, a timeout's 504 and the 500 below carry them too. Each accessor raises when its
guard has not run, rather than answering with a default that would hide a wiring mistake.

When the response is sent, ``on_refusal`` (if given: a metric's counter) hears the ``error``
code of every response of status 400 or more (``http.<status>`` if no guard or handler named
one). An exception nothing handled ends here: logged with its stack (``api.internal_error``),
answered 500 ``internal.error`` without a word of it. This is the API's last-resort handler, the
one place its requests catch ``Exception``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processor.api.errors import internal_problem, send_problem

log = structlog.get_logger("processor.api")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ID, _HEADERS, _BODY, _CALLER = "request_id", "guard_headers", "raw_body", "caller"


def _state(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def _required(scope: Scope, key: str, guard: str) -> Any:
    try:
        return _state(scope)[key]
    except KeyError:
        raise RuntimeError(f"{key} is set by the {guard} guard, which has not run") from None


def request_id(scope: Scope) -> str:
    """This request's id."""
    return str(_required(scope, _ID, "request-context"))


def add_response_header(scope: Scope, name: str, value: str) -> None:
    """Have the response to this request carry ``name: value``, whoever answers it."""
    _required(scope, _HEADERS, "request-context")[name] = value


def set_raw_body(scope: Scope, body: bytes) -> None:
    _state(scope)[_BODY] = body


def raw_body(scope: Scope) -> bytes:
    """The request body exactly as received (read and bounded by the body-limit guard)."""
    body: bytes = _required(scope, _BODY, "body-limit")
    return body


def set_caller(scope: Scope, key_name: str | None) -> None:
    _state(scope)[_CALLER] = key_name


def caller(scope: Scope) -> str | None:
    """The name of the API key this request proved (None: authentication is off)."""
    name: str | None = _required(scope, _CALLER, "access")
    return name


def incoming_id(headers: Headers) -> str | None:
    """The caller's ``X-Request-ID`` when it is sane (no spaces, quotes, control bytes)."""
    given = headers.get(REQUEST_ID_HEADER)
    return given if given is not None and _SANE_ID.fullmatch(given) else None


class RequestContext:
    """Outermost guard: request id, log binding, shared headers, last-resort 500."""

    def __init__(self, app: ASGIApp, on_refusal: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_id(Headers(scope=scope)) or uuid.uuid4().hex
        state = _state(scope)
        state[_ID] = rid
        extra: dict[str, str] = state.setdefault(_HEADERS, {})
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = rid
                for name, value in extra.items():
                    headers[name] = value  # set, not added: one value each
            await send(message)

        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception:
                log.exception("api.internal_error", method=scope["method"], path=scope["path"])
                if not status:  # once a response started, all that is left is to end it
                    await send_problem(scope, receive, send_with_headers, internal_problem())
            finally:
                if status >= 400 and self.on_refusal is not None:
                    self.on_refusal(str(state.get("error", f"http.{status}")))
                log.debug(
                    "api.request", method=scope["method"], path=scope["path"], status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )  # fmt: skip
