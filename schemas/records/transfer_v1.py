"""The ``transfer.v1`` record: money moved between two bank accounts or two wallets.

A fiat transfer (an ISO 4217 currency) goes from one IBAN to another; a crypto transfer
(one of :data:`CRYPTO_DECIMALS`) from one EVM wallet address to another. The amount is a
``Decimal`` with no more decimal places than the currency has.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Final, Self

import pycountry
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.records._common import (
    field_error,
    normalise_text,
    normalise_upper,
    raise_field_errors,
    require_printable,
)
from schemas.records.iban import IBAN_LENGTHS, IBAN_SHAPE, iban_checksum_ok

__all__ = [
    "CRYPTO_DECIMALS",
    "FIAT_CURRENCIES",
    "TransferV1",
    "currency_decimals",
    "is_wallet_address",
]

#: Crypto assets a transfer may move, with the decimal places each one divides into.
CRYPTO_DECIMALS: Final = MappingProxyType({"BTC": 8, "ETH": 18, "USDC": 6, "USDT": 6})

# ISO 4217 codes that are not money one account can send to another.
_NON_MONETARY: Final = frozenset({
    "XAD", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA",  # units of account, bond markets
    "XAG", "XAU", "XPD", "XPT",  # precious metals
    "XTS", "XXX",  # reserved for testing; "no currency"
})  # fmt: skip

#: ISO 4217 currencies a fiat transfer may use, read once from pycountry.
FIAT_CURRENCIES: Final[frozenset[str]] = (
    frozenset(c.alpha_3 for c in pycountry.currencies) - _NON_MONETARY
)

# ISO 4217 minor units where they differ from the usual 2 (pycountry does not carry them).
_FIAT_DECIMALS: Final = MappingProxyType(
    {code: 0 for code in ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG")}
    | {code: 0 for code in ("RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF")}
    | {code: 3 for code in ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")}
    | {"CLF": 4, "UYW": 4}
)

_MAX_INTEGER_DIGITS: Final = 18
# A double carries 15 significant decimal digits exactly; beyond that a JSON number may
# already have been rounded by the parser, so the amount must come as a string.
_MAX_FLOAT_DIGITS: Final = 15

_WALLET = re.compile(r"0x[0-9a-f]{40}")
_ZERO_WALLET: Final = "0x" + "0" * 40
_IBAN_SEPARATORS = re.compile(r"\s")


def currency_decimals(currency: str) -> int:
    """Return how many decimal places an amount in ``currency`` may have."""
    if currency in CRYPTO_DECIMALS:
        return CRYPTO_DECIMALS[currency]
    return _FIAT_DECIMALS.get(currency, 2)


def is_wallet_address(account: str) -> bool:
    """Tell whether a normalised account is an EVM wallet address rather than an IBAN."""
    return account.startswith("0x")


def _normalise_account(value: object) -> object:
    value = normalise_text(value)
    if not isinstance(value, str):
        return value
    if value[:2] in ("0x", "0X"):
        return value.lower()
    return _IBAN_SEPARATORS.sub("", value).upper()


def _check_account(value: str) -> str:
    if is_wallet_address(value):
        if _WALLET.fullmatch(value) is None:
            raise PydanticCustomError(
                "wallet_address", "a wallet address is 0x followed by 40 hexadecimal digits"
            )
        if value == _ZERO_WALLET:
            raise PydanticCustomError(
                "wallet_address", "the zero address burns funds and cannot be an account"
            )
        return value
    if IBAN_SHAPE.fullmatch(value) is None:
        raise PydanticCustomError(
            "account_format",
            "must be an IBAN (country code, two check digits, up to 30 letters or digits)"
            " or a wallet address (0x followed by 40 hexadecimal digits)",
        )
    country = value[:2]
    expected = IBAN_LENGTHS.get(country)
    if expected is None:
        raise PydanticCustomError(
            "iban_country", "country '{country}' does not issue IBANs", {"country": country}
        )
    if len(value) != expected:
        raise PydanticCustomError(
            "iban_length",
            "a {country} IBAN has {expected} characters, this one has {actual}",
            {"country": country, "expected": expected, "actual": len(value)},
        )
    if not iban_checksum_ok(value):
        raise PydanticCustomError(
            "iban_checksum", "the IBAN's check digits do not match; it is probably mistyped"
        )
    return value


def _amount_from_float(value: object) -> object:
    if isinstance(value, float) and math.isfinite(value):
        amount = Decimal(repr(value))
        if len(amount.as_tuple().digits) > _MAX_FLOAT_DIGITS:
            raise PydanticCustomError(
                "amount_precision",
                "a JSON number cannot carry this many digits exactly; send the amount as a string",
            )
        # 1e3 and 1000.0 are whole numbers: keep them free of a ".0" no currency needs.
        return Decimal(int(value)) if value.is_integer() else amount
    return value


def _check_amount(value: Decimal) -> Decimal:
    if value.adjusted() >= _MAX_INTEGER_DIGITS:
        raise PydanticCustomError(
            "amount_too_large",
            "an amount has at most {digits} digits before the decimal point",
            {"digits": _MAX_INTEGER_DIGITS},
        )
    # "1E+3" is a thousand: store it as 1000 so the amount serialises as plain digits.
    if _exponent(value) > 0:
        return value.quantize(Decimal(1))
    return value


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return exponent if isinstance(exponent, int) else 0  # not an int only for NaN and infinity


def _check_currency(value: str) -> str:
    if value not in FIAT_CURRENCIES and value not in CRYPTO_DECIMALS:
        raise PydanticCustomError(
            "currency_code",
            "'{value}' is neither an ISO 4217 currency nor one of the crypto assets {crypto}",
            {"value": value, "crypto": ", ".join(CRYPTO_DECIMALS)},
        )
    return value


Account = Annotated[
    str,
    Field(max_length=42),
    AfterValidator(_check_account),
    BeforeValidator(_normalise_account),
]
Amount = Annotated[
    Decimal,
    Field(gt=0),
    AfterValidator(_check_amount),
    BeforeValidator(_amount_from_float),
    PlainSerializer(lambda amount: format(amount, "f"), return_type=str, when_used="json"),
]
Currency = Annotated[
    str,
    Field(max_length=4),
    AfterValidator(_check_currency),
    BeforeValidator(normalise_upper),
]
Reference = Annotated[
    str,
    Field(min_length=1, max_length=140),
    AfterValidator(require_printable),
    BeforeValidator(normalise_text),
]


class TransferV1(BaseModel):
    """A transfer between two accounts (``transfer.v1``).

    Accounts are IBANs (spaces removed, upper-cased, registry length and mod-97 checked)
    for fiat currencies, or EVM wallet addresses (lower-cased) for crypto assets; the two
    must differ. The amount is positive, has at most 18 digits before the decimal point and
    no more decimal places than the currency has; it serialises to JSON as a string.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_account: Account = Field(description="Paying account: an IBAN or a 0x wallet address.")
    to_account: Account = Field(description="Receiving account: an IBAN or a 0x wallet address.")
    amount: Amount = Field(
        description="Amount in the currency's major unit; send it as a string to keep it exact."
    )
    currency: Currency = Field(
        description="ISO 4217 currency code, or one of the crypto assets BTC, ETH, USDC, USDT."
    )
    reference: Reference = Field(description="Payment reference shown to both parties.")
    requested_at: AwareDatetime | None = Field(
        default=None, description="When the transfer was requested, with a UTC offset."
    )

    @model_validator(mode="after")
    def _accounts_and_amount_fit_currency(self) -> Self:
        errors = [
            *self._account_kind_errors(),
            *self._same_account_errors(),
            *self._amount_decimal_errors(),
        ]
        raise_field_errors(type(self).__name__, errors)
        return self

    def _account_kind_errors(self) -> list[InitErrorDetails]:
        crypto = self.currency in CRYPTO_DECIMALS
        errors = []
        for field in ("from_account", "to_account"):
            account: str = getattr(self, field)
            if crypto and not is_wallet_address(account):
                message = "{currency} is a crypto asset, so this must be a wallet address"
            elif not crypto and is_wallet_address(account):
                message = "{currency} is a fiat currency, so this must be an IBAN"
            else:
                continue
            errors.append(
                field_error(field, "account_kind", message, account, currency=self.currency)
            )
        return errors

    def _same_account_errors(self) -> list[InitErrorDetails]:
        if self.from_account != self.to_account:
            return []
        return [
            field_error(
                "to_account", "same_account", "must differ from from_account", self.to_account
            )
        ]

    def _amount_decimal_errors(self) -> list[InitErrorDetails]:
        allowed = currency_decimals(self.currency)
        actual = max(0, -_exponent(self.amount))
        if actual <= allowed:
            return []
        return [
            field_error(
                "amount",
                "amount_decimals",
                "{currency} amounts have at most {allowed} decimal places, this one has {actual}",
                self.amount,
                currency=self.currency,
                allowed=allowed,
                actual=actual,
            )
        ]
