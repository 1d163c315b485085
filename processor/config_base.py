"""The building blocks of every config section: frozen models that forbid unknown keys, and
validation errors that keep one line per problem at its own key path."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

#: A key path (as pydantic reports locations) and what is wrong there.
Problem = tuple[tuple[str | int, ...], str]


def invalid(title: str, problems: Sequence[Problem]) -> ValidationError:
    """A validation error with one line per problem, each at its own key path.

    Raised from a validator, pydantic keeps the locations (prefixed with the enclosing
    sections), where a plain ``ValueError`` would be reported at the model's own location.
    """
    details = [
        InitErrorDetails(type=PydanticCustomError("config", message), loc=loc, input=None)
        for loc, message in problems
    ]
    return ValidationError.from_exception_data(title, details)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
