"""The ``customer.v1`` record: a business customer with its contact details and EU VAT id."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Annotated, Final, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from schemas.records._common import (
    CountryCode,
    field_error,
    normalise_text,
    raise_field_errors,
    reject_control_chars,
)

__all__ = ["VAT_ID_FORMATS", "CustomerV1"]

#: The number part of an EU VAT id per prefix, as published for VIES. Greece uses ``EL``,
#: Northern Ireland ``XI``; each prefix maps to its ISO country through
#: :data:`_VAT_PREFIX_COUNTRY`.
VAT_ID_FORMATS: Final = MappingProxyType(
    {
        "AT": r"U\d{8}",
        "BE": r"[01]\d{9}",
        "BG": r"\d{9,10}",
        "CY": r"\d{8}[A-Z]",
        "CZ": r"\d{8,10}",
        "DE": r"\d{9}",
        "DK": r"\d{8}",
        "EE": r"\d{9}",
        "EL": r"\d{9}",
        "ES": r"[0-9A-Z]\d{7}[0-9A-Z]",
        "FI": r"\d{8}",
        "FR": r"[0-9A-Z]{2}\d{9}",
        "HR": r"\d{11}",
        "HU": r"\d{8}",
        "IE": r"\d{7}[A-W][A-I]?|\d[A-Z]\d{5}[A-W]",
        "IT": r"\d{11}",
        "LT": r"\d{9}|\d{12}",
        "LU": r"\d{8}",
        "LV": r"\d{11}",
        "MT": r"\d{8}",
        "NL": r"\d{9}B\d{2}",
        "PL": r"\d{10}",
        "PT": r"\d{9}",
        "RO": r"[1-9]\d{1,9}",
        "SE": r"\d{10}01",
        "SI": r"\d{8}",
        "SK": r"\d{10}",
        "XI": r"\d{9}|\d{12}|GD\d{3}|HA\d{3}",
    }
)
_VAT_PREFIX_COUNTRY: Final = MappingProxyType(
    {prefix: {"EL": "GR", "XI": "GB"}.get(prefix, prefix) for prefix in VAT_ID_FORMATS}
)
_VAT_NUMBER_RE: Final = {
    prefix: re.compile(pattern, re.ASCII) for prefix, pattern in VAT_ID_FORMATS.items()
}
_VAT_SHAPE = re.compile(r"(?P<prefix>[A-Z]{2})(?P<number>[0-9A-Z]{2,13})", re.ASCII)
_VAT_SEPARATORS = re.compile(r"[\s.\-]")

_PHONE_SEPARATORS = re.compile(r"[\s\-()]")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def _normalise_vat_id(value: object) -> object:
    value = normalise_text(value)
    if isinstance(value, str):
        return _VAT_SEPARATORS.sub("", value).upper()
    return value


def _check_vat_id(value: str) -> str:
    match = _VAT_SHAPE.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "vat_id_format",
            "must be an EU VAT id: a two-letter member-state prefix and 2 to 13 letters or digits",
        )
    prefix, number = match["prefix"], match["number"]
    if prefix not in _VAT_NUMBER_RE:
        raise PydanticCustomError(
            "vat_id_prefix",
            "'{prefix}' is not an EU VAT prefix"
            " (a member state, EL for Greece or XI for Northern Ireland)",
            {"prefix": prefix},
        )
    if _VAT_NUMBER_RE[prefix].fullmatch(number) is None:
        raise PydanticCustomError(
            "vat_id_format",
            "'{value}' does not have the format of a {prefix} VAT id",
            {"value": value, "prefix": prefix},
        )
    return value


def _normalise_phone(value: object) -> object:
    value = normalise_text(value)
    if isinstance(value, str):
        return _PHONE_SEPARATORS.sub("", value)
    return value


def _check_phone(value: str) -> str:
    if _E164.fullmatch(value) is None:
        raise PydanticCustomError(
            "phone_format",
            "must be an international phone number in E.164 form, e.g. +493012345678",
        )
    return value


def _reject_display_name(value: object) -> object:
    value = normalise_text(value)
    # pydantic's EmailStr would quietly accept "Name <addr>" and keep only the address.
    if isinstance(value, str) and ("<" in value or ">" in value):
        raise PydanticCustomError(
            "email_format", "must be a bare e-mail address, without a display name"
        )
    return value


# A plain ASCII address: dot-atom local part of the commonest characters, host name labels,
# an alphabetic top-level domain. For these, email-validator's full check (IDNA, UTS-46,
# Unicode safety: ~70 us, the costliest step of a customer record) can only say "valid"
# and return it unchanged; tests/unit/test_schemas_email.py holds the two side by side.
_PLAIN_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9_+\-]+(?:\.[A-Za-z0-9_+\-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+(?P<tld>[A-Za-z]{2,63}))",
    re.ASCII,
)
_SPECIAL_USE_TLDS: Final = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


def _check_email(value: str) -> str:
    """Pydantic's ``EmailStr`` check (email-validator), with a fast path for plain addresses."""
    plain = _PLAIN_EMAIL.fullmatch(value)
    if (
        plain is not None
        and len(value) <= 254
        and len(plain["local"]) <= 64
        and len(plain["domain"]) <= 253
        and "--" not in plain["domain"]  # IDNA rules apply to such labels: the full check
        and plain["tld"].lower() not in _SPECIAL_USE_TLDS
    ):
        return value
    return validate_email(value)[1]


def _lower_email(value: str) -> str:
    value = value.lower()
    if len(value) > 254:
        raise PydanticCustomError("email_too_long", "an e-mail address has at most 254 characters")
    return value


CompanyName = Annotated[
    str,
    Field(min_length=1, max_length=200),
    AfterValidator(reject_control_chars),
    BeforeValidator(normalise_text),
]
Email = Annotated[
    str,
    Field(json_schema_extra={"format": "email", "maxLength": 254}),  # checked by the above
    AfterValidator(_check_email),
    AfterValidator(_lower_email),
    BeforeValidator(_reject_display_name),
]
VatId = Annotated[
    str,
    Field(max_length=15),
    AfterValidator(_check_vat_id),
    BeforeValidator(_normalise_vat_id),
]
Phone = Annotated[
    str,
    Field(max_length=16),
    AfterValidator(_check_phone),
    BeforeValidator(_normalise_phone),
]


class CustomerV1(BaseModel):
    """A business customer (``customer.v1``).

    Strings are trimmed and NFC-normalised; the e-mail is lower-cased; the country is an
    upper-case ISO 3166-1 alpha-2 code; the VAT id loses spaces, dots and dashes and must
    belong to the customer's country (``EL`` for Greece, ``XI`` for Northern Ireland); the
    phone number loses spaces, dashes and parentheses and must be E.164.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    company_name: CompanyName = Field(description="Registered company name.")
    email: Email = Field(description="Contact e-mail address, stored lower-case.")
    country: CountryCode = Field(description="Country of registration, ISO 3166-1 alpha-2.")
    vat_id: VatId | None = Field(
        default=None, description="EU VAT id, e.g. DE123456789; its prefix matches the country."
    )
    phone: Phone | None = Field(default=None, description="Phone number in E.164 form.")

    @model_validator(mode="after")
    def _vat_id_matches_country(self) -> Self:
        if self.vat_id is not None:
            prefix = self.vat_id[:2]
            if _VAT_PREFIX_COUNTRY[prefix] != self.country:
                raise_field_errors(
                    type(self).__name__,
                    [
                        field_error(
                            "vat_id",
                            "vat_id_country_mismatch",
                            "VAT id prefix {prefix} is for country {expected},"
                            " but the customer's country is {country}",
                            self.vat_id,
                            prefix=prefix,
                            expected=_VAT_PREFIX_COUNTRY[prefix],
                            country=self.country,
                        )
                    ],
                )
        return self
