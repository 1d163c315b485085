"""The API's one error shape: ``{error, message, details[{code, message, field}], request_id}``.

Every refusal of the API (a guard's or a route's) is an :class:`ApiProblem` turned into this
shape; nothing else reaches a client, so no exception text, stack or upstream URL leaks.
FastAPI's and Starlette's own refusals are translated here, in one place
(:func:`install_handlers`): request validation (422 ``request.invalid``, one detail per
problem, never the rejected input), unknown paths (404 ``not_found``), wrong methods (405
``method_not_allowed``, ``Allow`` kept), and any exception nobody handled (500
``internal.error``: the reason code the stream gives the same failure).

The ``error`` codes the guards answer with (stable strings, like the reason codes)::

    request.invalid            422  the body or parameters fail validation (details say where)
    request.too_large          413  the body is over protection.max_body_bytes
    request.timeout            504  the request did not finish within protection.timeout_s
    auth.key_missing           401  no X-API-Key / Authorization: Bearer
    auth.key_invalid           401  a key that is not one of the configured hashes
    auth.signature_invalid     401  X-Signature missing, malformed, wrong, or its timestamp stale
    rate_limited               429  a rate-limit layer is empty (Retry-After says when to retry)
    idempotency.key_invalid    400  an Idempotency-Key that is empty, too long or not ASCII
    idempotency.key_reused     422  the key was used before with another request body
    idempotency.in_progress    409  the first request with this key has not finished yet
    not_found                  404  no such path
    method_not_allowed         405  the path exists, not with this method
    internal.error             500  anything else; the log line has the exception, the body not
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: str
    message: str
    details: list[ErrorDetail] = []
    request_id: str


class ApiProblem(Exception):
    """A refusal with its HTTP status, a stable ``error`` code and a message safe to show."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: Sequence[ErrorDetail] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = list(details)
        self.headers = headers or {}


def internal_problem() -> ApiProblem:
    """The 500 answer: the same words whatever failed (the log line says what)."""
    return ApiProblem(500, "internal.error", "the request could not be processed (internal error)")


def request_id_of(request: Request) -> str:
    """The id the request-id guard gave this request ("-" before it ran)."""
    return str(getattr(request.state, "request_id", "-"))


def problem_response(request: Request, problem: ApiProblem) -> JSONResponse:
    """``problem`` in the one shape; the request's state notes its code for the metrics."""
    request.state.error = problem.error
    body = ErrorBody(
        error=problem.error,
        message=problem.message,
        details=problem.details,
        request_id=request_id_of(request),
    )
    return JSONResponse(body.model_dump(), status_code=problem.status, headers=problem.headers)


async def send_problem(scope: Scope, receive: Receive, send: Send, problem: ApiProblem) -> None:
    """Answer with ``problem`` from an ASGI middleware (outside FastAPI's exception handlers)."""
    await problem_response(Request(scope, receive), problem)(scope, receive, send)


def _field(loc: Sequence[Any]) -> str | None:
    """``("body", "data", "email")`` as ``data.email``, list indexes as ``items[3]``."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or None


def validation_problem(exc: RequestValidationError) -> ApiProblem:
    """FastAPI's validation errors as ``request.invalid``, without the rejected input."""
    details = [
        ErrorDetail(code=str(e.get("type", "invalid")), message=str(e.get("msg", "invalid")),
                    field=_field(e.get("loc", ())))
        for e in exc.errors()
    ]  # fmt: skip
    return ApiProblem(422, "request.invalid", "the request does not validate", details)


def http_problem(exc: StarletteHTTPException) -> ApiProblem:
    """Starlette's HTTP exceptions (404, 405, a route's ``HTTPException``) in the one shape."""
    codes = {404: "not_found", 405: "method_not_allowed"}
    try:
        phrase = HTTPStatus(exc.status_code).phrase.lower()
    except ValueError:
        phrase = "refused"
    error = codes.get(exc.status_code, phrase.replace(" ", "_"))
    message = exc.detail if isinstance(exc.detail, str) and exc.status_code not in codes else phrase
    return ApiProblem(exc.status_code, error, message, headers=dict(exc.headers or {}))


def install_handlers(app: FastAPI) -> None:
    """Answer every refusal FastAPI and Starlette raise in the one shape."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return problem_response(request, exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(request, validation_problem(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(request, http_problem(exc))

    async def on_anything(request: Request, exc: Exception) -> JSONResponse:
        # A backstop: the request-context guard answers unhandled exceptions first; this one
        # serves what is raised outside it (a middleware added after protect()).
        return problem_response(request, internal_problem())

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_anything)
