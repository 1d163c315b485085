"""Building blocks shared by the record models: text normalisers, checks and error helpers.

Every string a record accepts goes through :func:`normalise_text` first (NFC, then trimmed),
so length limits and format checks see the value that will be stored. Checks raise
:class:`~pydantic_core.PydanticCustomError` with a stable ``type`` and a message written for
the person who sent the record, because these messages end up in outcome reasons.

The constrained types list their metadata as ``Field`` constraints, then ``AfterValidator``,
then ``BeforeValidator``: pydantic wraps each item around the ones before it, so the
normaliser runs first and the length limits and checks see the normalised string (and
report pydantic's own "string_too_long" rather than a generic length error).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Annotated, Any, Final

import pycountry
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "ISO_COUNTRY_CODES",
    "CountryCode",
    "field_error",
    "normalise_text",
    "normalise_upper",
    "raise_field_errors",
    "reject_control_chars",
    "require_printable",
]

#: ISO 3166-1 alpha-2 codes, read once from pycountry's maintained copy of the standard.
ISO_COUNTRY_CODES: Final[frozenset[str]] = frozenset(c.alpha_2 for c in pycountry.countries)

# Line and paragraph separators break single-line text as surely as a newline does, and the
# bidirectional overrides and isolates can make text display differently from what it says.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cs", "Co", "Cn", "Zl", "Zp"})
_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}"


def normalise_text(value: object) -> object:
    """Return a string NFC-normalised and stripped of surrounding whitespace; other input as is.

    Non-strings pass through untouched so pydantic's own type check reports them.
    """
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip()
    return value


def normalise_upper(value: object) -> object:
    """Like :func:`normalise_text`, then upper-cased."""
    value = normalise_text(value)
    return value.upper() if isinstance(value, str) else value


def reject_control_chars(value: str) -> str:
    """Reject control characters, line separators, unassigned code points and bidi overrides."""
    if value.isascii() and value.isprintable():
        return value  # every forbidden character is either non-ASCII or not printable
    for char in value:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES or char in _BIDI_CONTROLS:
            raise PydanticCustomError(
                "control_characters",
                "must not contain control or invisible formatting characters (found {codepoint})",
                {"codepoint": _codepoint(char)},
            )
    return value


def require_printable(value: str) -> str:
    """Reject anything :meth:`str.isprintable` rejects: controls, format characters, odd spaces."""
    for char in value:
        if not char.isprintable():
            raise PydanticCustomError(
                "not_printable",
                "must contain printable characters only (found {codepoint})",
                {"codepoint": _codepoint(char)},
            )
    return value


def _check_country(value: str) -> str:
    if value not in ISO_COUNTRY_CODES:
        raise PydanticCustomError(
            "country_code",
            "'{value}' is not an ISO 3166-1 alpha-2 country code",
            {"value": value},
        )
    return value


#: An ISO 3166-1 alpha-2 country code, upper-cased (``"de"`` becomes ``"DE"``).
CountryCode = Annotated[
    str,
    Field(max_length=2, description="ISO 3166-1 alpha-2 country code."),
    AfterValidator(_check_country),
    BeforeValidator(normalise_upper),
]


def field_error(
    field: str, error_type: str, message: str, value: Any, **context: Any
) -> InitErrorDetails:
    """Describe one error on one field, for :func:`raise_field_errors`.

    Args:
        field: The field the error belongs to (its ``loc``).
        error_type: A stable, machine-readable error type, e.g. ``"vat_id_country_mismatch"``.
        message: The message template; ``{name}`` placeholders are filled from ``context``.
        value: The offending value.
        **context: Values for the template's placeholders.
    """
    return InitErrorDetails(
        type=PydanticCustomError(error_type, message, context or None),
        loc=(field,),
        input=value,
    )


def raise_field_errors(title: str, errors: Sequence[InitErrorDetails]) -> None:
    """Raise one :class:`~pydantic.ValidationError` holding ``errors``, if there are any.

    A model validator that checks several fields together uses this so that each error
    names the field at fault instead of the model as a whole.
    """
    if errors:
        raise ValidationError.from_exception_data(title, list(errors))
