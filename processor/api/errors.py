"""The API's one error shape: ``{error, message, details[{code, message, field}], request_id}``.

Every refusal of the API (a guard's or a route's) is an :class:`ApiProblem` turned into this
shape; nothing else reaches a client, so no exception text, stack or upstream URL leaks.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel


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


def request_id_of(request: Request) -> str:
    """The id the request-id guard gave this request ("-" before it ran)."""
    return str(getattr(request.state, "request_id", "-"))


def problem_response(request: Request, problem: ApiProblem) -> JSONResponse:
    body = ErrorBody(
        error=problem.error,
        message=problem.message,
        details=problem.details,
        request_id=request_id_of(request),
    )
    return JSONResponse(body.model_dump(), status_code=problem.status, headers=problem.headers)
