"""The CloudEvents 1.0 envelope that every input record arrives in.

CloudEvents defines two ways to carry an event in a Kafka record, and the processor reads both:

- **Structured mode**: the record's value is the whole event as a JSON object (attributes
  and ``data`` side by side) and its ``content-type`` header is
  :data:`STRUCTURED_CONTENT_TYPE`.
- **Binary mode**: each attribute travels in a header named :data:`BINARY_HEADER_PREFIX`
  plus the attribute name (``ce_id``, ``ce_type``, ...), the record's value is the event's
  ``data`` alone, and the ``content-type`` header is the event's ``datacontenttype``.

Either way the processor decodes the bytes and hands the attributes and data to
:class:`CloudEvent`; this module does no parsing of its own. ``id`` is the record's
idempotency key and ``type`` names the record schema (see :data:`schemas.records.RECORD_TYPES`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.records._common import field_error, raise_field_errors

__all__ = [
    "BINARY_HEADER_PREFIX",
    "MAX_EXTENSIONS",
    "REQUIRED_ATTRIBUTES",
    "STRUCTURED_CONTENT_TYPE",
    "CloudEvent",
]

#: The ``content-type`` of a record whose value is a whole event in JSON (structured mode).
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
#: Prefix of the headers that carry the attributes in binary mode (``ce_id``, ``ce_type``, ...).
BINARY_HEADER_PREFIX: Final = "ce_"
#: The attributes every CloudEvent must have.
REQUIRED_ATTRIBUTES: Final = ("id", "source", "specversion", "type")
#: How many extension attributes an event may carry.
MAX_EXTENSIONS: Final = 32

_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
_MAX_EXTENSION_STRING = 2048
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank_string", "must not be blank")
    return value


def _uri_reference(value: str) -> str:
    if value.isascii() and value.isprintable() and " " not in value:
        return value  # the common case, without a per-character scan
    for char in value:
        if char.isspace() or unicodedata.category(char) == "Cc":
            raise PydanticCustomError(
                "uri_reference", "must be a URI-reference, without whitespace or control characters"
            )
    return value


def _extension_error(name: str, value: Any) -> InitErrorDetails | None:
    """Say what is wrong with one extension attribute, or return None if nothing is."""
    if name == "data_base64":
        return field_error(
            name, "data_base64", "binary data (data_base64) is not accepted: send JSON data", value
        )
    if _EXTENSION_NAME.fullmatch(name) is None:
        return field_error(
            name,
            "extension_name",
            "an extension attribute name is 1 to 20 lower-case letters or digits",
            value,
        )
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if _INT32_MIN <= value <= _INT32_MAX:
            return None
        return field_error(
            name, "extension_value", "an integer extension must fit in 32 signed bits", value
        )
    if isinstance(value, str):
        if len(value) <= _MAX_EXTENSION_STRING:
            return None
        return field_error(
            name,
            "extension_value",
            "a string extension has at most {max} characters",
            value,
            max=_MAX_EXTENSION_STRING,
        )
    return field_error(
        name, "extension_value", "an extension value must be a string, integer or boolean", value
    )


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event: the context attributes plus the event's ``data``.

    Extension attributes are kept (at most 32); their names must be 1 to 20 lower-case
    letters or digits and their values strings, 32-bit integers or booleans.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = Field(description="CloudEvents version; only 1.0 is known.")
    id: Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_not_blank)] = Field(
        description="Identifies the event; with source, unique. The record's idempotency key."
    )
    source: Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_uri_reference)] = (
        Field(description="URI-reference of the context in which the event happened.")
    )
    type: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The kind of event; names the record schema, e.g. customer.v1.",
    )
    time: AwareDatetime | None = Field(
        default=None, description="When the event happened (RFC 3339, with a UTC offset)."
    )
    datacontenttype: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Media type of data, e.g. application/json.",
    )
    dataschema: str | None = Field(
        default=None, min_length=1, max_length=2048, description="URI of the schema data follows."
    )
    subject: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="The subject of the event within the source.",
    )
    data: Any = Field(default=None, description="The event payload, any JSON value.")

    @property
    def extensions(self) -> dict[str, str | int | bool]:
        """The extension attributes, by name."""
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _extensions_follow_naming_rules(self) -> Self:
        extra = self.model_extra
        if not extra:
            return self
        if len(extra) > MAX_EXTENSIONS:
            raise PydanticCustomError(
                "too_many_extensions",
                "an event has at most {max} extension attributes, this one has {count}",
                {"max": MAX_EXTENSIONS, "count": len(extra)},
            )
        errors = [
            error for name, value in extra.items() if (error := _extension_error(name, value))
        ]
        raise_field_errors(type(self).__name__, errors)
        return self
