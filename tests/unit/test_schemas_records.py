"""Unit tests for the record models (customer.v1, transfer.v1) and the IBAN helpers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.records import RECORD_TYPES, CustomerV1, TransferV1, iban_checksum_ok, make_iban
from schemas.records.iban import IBAN_LENGTHS

DE_IBAN = make_iban("DE", "370400440532013000")
FR_IBAN = make_iban("FR", "20041010050500013M02606")
WALLET_A = "0x" + "ab" * 20
WALLET_B = "0x" + "12" * 20

CUSTOMER: dict[str, Any] = {
    "company_name": "ACME Widgets GmbH",
    "email": "billing@example.com",
    "country": "DE",
    "vat_id": "DE123456789",
    "phone": "+493012345678",
}
FIAT_TRANSFER: dict[str, Any] = {
    "from_account": DE_IBAN,
    "to_account": FR_IBAN,
    "amount": "10.50",
    "currency": "EUR",
    "reference": "Invoice 42",
}
CRYPTO_TRANSFER: dict[str, Any] = {
    **FIAT_TRANSFER,
    "from_account": WALLET_A,
    "to_account": WALLET_B,
    "amount": "0.5",
    "currency": "ETH",
}


def _only_error(model: type[BaseModel], data: dict[str, Any]) -> tuple[tuple[Any, ...], str, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    return errors[0]["loc"], errors[0]["type"], errors[0]["msg"]


def test_record_types_maps_each_type_to_its_model() -> None:
    """RECORD_TYPES names exactly the known record types and cannot be changed at runtime."""
    assert dict(RECORD_TYPES) == {"customer.v1": CustomerV1, "transfer.v1": TransferV1}
    with pytest.raises(TypeError):
        RECORD_TYPES["other.v1"] = CustomerV1  # type: ignore[index]


@pytest.mark.parametrize(("model", "data"), [(CustomerV1, CUSTOMER), (TransferV1, FIAT_TRANSFER)])
def test_record_models_are_frozen(model: type[BaseModel], data: dict[str, Any]) -> None:
    """A validated record cannot be modified afterwards."""
    record = model.model_validate(data)
    field = next(iter(model.model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(record, field, "x")


@pytest.mark.parametrize(
    ("model", "exempt"), [(CustomerV1, set()), (TransferV1, {"amount", "requested_at"})]
)
def test_every_string_in_a_record_schema_has_a_max_length(
    model: type[BaseModel], exempt: set[str]
) -> None:
    """Every string field is bounded, except a timestamp and the amount (its digits are checked)."""
    unbounded = set()
    for name, prop in model.model_json_schema(mode="validation")["properties"].items():
        for branch in prop.get("anyOf", [prop]):
            if branch.get("type") == "string" and "maxLength" not in branch:
                unbounded.add(name)
    assert unbounded == exempt


# --- customer.v1 --------------------------------------------------------------------------


def test_valid_customer_is_trimmed_and_normalised() -> None:
    """A customer's strings are trimmed and NFC-normalised, e-mail lower-cased, ids compacted."""
    customer = CustomerV1.model_validate(
        {
            "company_name": "  Cafe\u0301 Zu\u0308rich AG ",
            "email": " Info@Example.COM ",
            "country": "de",
            "vat_id": "de 123.456-789",
            "phone": "+49 (30) 1234-5678",
        }
    )
    assert customer.model_dump() == {
        "company_name": "Café Zürich AG",
        "email": "info@example.com",
        "country": "DE",
        "vat_id": "DE123456789",
        "phone": "+493012345678",
    }


def test_customer_vat_id_and_phone_are_optional() -> None:
    """A customer without a VAT id or phone number is valid."""
    customer = CustomerV1.model_validate({**CUSTOMER, "vat_id": None, "phone": None})
    assert (customer.vat_id, customer.phone) == (None, None)


@pytest.mark.parametrize(
    ("country", "vat_id"),
    [("GR", "EL123456789"), ("GB", "XI123456789"), ("NL", "NL123456789B01"), ("AT", "ATU12345678")],
)
def test_vat_id_prefix_matches_its_member_state(country: str, vat_id: str) -> None:
    """EL belongs to Greece, XI to Northern Ireland (GB), other prefixes to their own country."""
    customer = CustomerV1.model_validate({**CUSTOMER, "country": country, "vat_id": vat_id})
    assert customer.vat_id == vat_id


@pytest.mark.parametrize(
    ("overrides", "field", "error_type", "message_part"),
    [
        ({"email": "not-an-email"}, "email", "value_error", "@-sign"),
        ({"email": "Jane <jane@example.com>"}, "email", "email_format", "bare e-mail"),
        (
            {"email": "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".example.com"},
            "email",
            "value_error",
            "too long",
        ),
        ({"country": "XX"}, "country", "country_code", "ISO 3166-1"),
        ({"country": "DEU"}, "country", "string_too_long", "2 characters"),
        ({"vat_id": "FR12345678901"}, "vat_id", "vat_id_country_mismatch", "FR"),
        ({"vat_id": "GB123456789"}, "vat_id", "vat_id_prefix", "not an EU VAT prefix"),
        ({"vat_id": "DE12345"}, "vat_id", "vat_id_format", "DE VAT id"),
        ({"vat_id": "D"}, "vat_id", "vat_id_format", "member-state prefix"),
        ({"phone": "030 1234567"}, "phone", "phone_format", "E.164"),
        ({"phone": "+0301234567"}, "phone", "phone_format", "E.164"),
        ({"phone": "+1234567890123456"}, "phone", "string_too_long", "16"),
        ({"company_name": "ACME\tGmbH"}, "company_name", "control_characters", "U+0009"),
        ({"company_name": "ACME\u202eHbmG"}, "company_name", "control_characters", "U+202E"),
        ({"company_name": "   "}, "company_name", "string_too_short", "at least 1"),
        ({"company_name": "x" * 201}, "company_name", "string_too_long", "200"),
        ({"website": "https://example.com"}, "website", "extra_forbidden", "not permitted"),
    ],
)
def test_customer_rule_violation_names_the_field(
    overrides: dict[str, Any], field: str, error_type: str, message_part: str
) -> None:
    """Each customer rule rejects a bad value with one error on the offending field."""
    loc, kind, message = _only_error(CustomerV1, {**CUSTOMER, **overrides})
    assert (loc, kind) == ((field,), error_type)
    assert message_part in message


def test_customer_missing_required_field_is_reported() -> None:
    """A customer without an e-mail address is rejected on the email field."""
    data = {key: value for key, value in CUSTOMER.items() if key != "email"}
    assert _only_error(CustomerV1, data)[:2] == (("email",), "missing")


# --- transfer.v1 --------------------------------------------------------------------------


def test_valid_fiat_transfer_is_normalised_and_serialises_amount_as_string() -> None:
    """IBANs lose spaces and are upper-cased, so is the currency; the amount is a JSON string."""
    spaced = " ".join(DE_IBAN[i : i + 4] for i in range(0, len(DE_IBAN), 4)).lower()
    transfer = TransferV1.model_validate(
        {**FIAT_TRANSFER, "from_account": spaced, "currency": "eur", "reference": " Invoice 42 "}
    )
    assert transfer.from_account == DE_IBAN
    assert transfer.currency == "EUR"
    assert transfer.reference == "Invoice 42"
    assert json.loads(transfer.model_dump_json())["amount"] == "10.50"


def test_valid_crypto_transfer_lower_cases_wallet_addresses() -> None:
    """Wallet addresses are lower-cased and an 18-decimal ETH amount is kept exactly."""
    transfer = TransferV1.model_validate(
        {
            **CRYPTO_TRANSFER,
            "from_account": WALLET_A.upper().replace("0X", "0x"),
            "amount": "1.000000000000000001",
        }
    )
    assert transfer.from_account == WALLET_A
    assert transfer.amount == Decimal("1.000000000000000001")


@pytest.mark.parametrize(
    ("raw_json", "expected"),
    [
        ('"10.50"', "10.50"),
        ("10.5", "10.5"),
        ("7", "7"),
        ("1e3", "1000"),
        ('"1E+2"', "100"),
        ('"1E-2"', "0.01"),
    ],
)
def test_amount_accepts_json_string_or_number_and_serialises_plain_digits(
    raw_json: str, expected: str
) -> None:
    """An amount may arrive as a JSON string or number and always serialises as plain digits."""
    document = json.dumps({**FIAT_TRANSFER}).replace('"10.50"', raw_json)
    transfer = TransferV1.model_validate_json(document)
    assert json.loads(transfer.model_dump_json())["amount"] == expected


def test_amount_as_json_number_with_too_many_digits_asks_for_a_string() -> None:
    """A JSON number too long to be exact as a double is rejected rather than silently rounded."""
    document = json.dumps(FIAT_TRANSFER).replace('"10.50"', "12345678901234567.25")
    with pytest.raises(ValidationError) as caught:
        TransferV1.model_validate_json(document)
    assert caught.value.errors()[0]["type"] == "amount_precision"
    assert "as a string" in caught.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    ("currency", "amount"),
    [
        ("JPY", "1500"),
        ("KWD", "1.125"),
        ("EUR", "0.01"),
        ("CLF", "1.2345"),
        ("USD", "999999999999999999.99"),
    ],
)
def test_fiat_amount_up_to_the_currency_minor_units_is_accepted(currency: str, amount: str) -> None:
    """Each fiat currency accepts as many decimal places as its minor unit has."""
    transfer = TransferV1.model_validate({**FIAT_TRANSFER, "currency": currency, "amount": amount})
    assert transfer.amount == Decimal(amount)


@pytest.mark.parametrize(
    ("overrides", "field", "error_type", "message_part"),
    [
        (
            {"from_account": DE_IBAN[:-1] + str((int(DE_IBAN[-1]) + 1) % 10)},
            "from_account",
            "iban_checksum",
            "check digits",
        ),
        ({"to_account": "DE89 3704 0044 0532 0130"}, "to_account", "iban_length", "22 characters"),
        ({"from_account": "US12345678901234567"}, "from_account", "iban_country", "US"),
        ({"from_account": "not an account number"}, "from_account", "account_format", "IBAN"),
        ({"from_account": WALLET_A}, "from_account", "account_kind", "must be an IBAN"),
        ({"to_account": DE_IBAN}, "to_account", "same_account", "differ"),
        ({"amount": "0"}, "amount", "greater_than", "greater than 0"),
        ({"amount": -5}, "amount", "greater_than", "greater than 0"),
        ({"amount": "NaN"}, "amount", "finite_number", "finite"),
        ({"amount": True}, "amount", "decimal_type", "Decimal"),
        ({"amount": "1" * 19}, "amount", "amount_too_large", "18 digits"),
        ({"amount": "10.505"}, "amount", "amount_decimals", "EUR amounts have at most 2"),
        (
            {"amount": "100.5", "currency": "JPY"},
            "amount",
            "amount_decimals",
            "JPY amounts have at most 0",
        ),
        ({"amount": "1.0001", "currency": "KWD"}, "amount", "amount_decimals", "at most 3"),
        ({"currency": "XXX"}, "currency", "currency_code", "ISO 4217"),
        ({"currency": "DOGE"}, "currency", "currency_code", "ISO 4217"),
        ({"reference": "Invoice\n42"}, "reference", "not_printable", "U+000A"),
        ({"reference": ""}, "reference", "string_too_short", "at least 1"),
        ({"reference": "r" * 141}, "reference", "string_too_long", "140"),
        ({"requested_at": "2024-05-01T12:00:00"}, "requested_at", "timezone_aware", "timezone"),
        ({"memo": "hi"}, "memo", "extra_forbidden", "not permitted"),
    ],
)
def test_fiat_transfer_rule_violation_names_the_field(
    overrides: dict[str, Any], field: str, error_type: str, message_part: str
) -> None:
    """Each fiat-transfer rule rejects a bad value with one error on the offending field."""
    loc, kind, message = _only_error(TransferV1, {**FIAT_TRANSFER, **overrides})
    assert (loc, kind) == ((field,), error_type)
    assert message_part in message


@pytest.mark.parametrize(
    ("overrides", "field", "error_type", "message_part"),
    [
        (
            {"amount": "0.000000001", "currency": "BTC"},
            "amount",
            "amount_decimals",
            "BTC amounts have at most 8",
        ),
        ({"amount": "0.0000001", "currency": "USDC"}, "amount", "amount_decimals", "at most 6"),
        ({"to_account": FR_IBAN}, "to_account", "account_kind", "must be a wallet address"),
        ({"to_account": "0x" + "g" * 40}, "to_account", "wallet_address", "40 hexadecimal"),
        ({"to_account": "0x" + "0" * 40}, "to_account", "wallet_address", "zero address"),
        ({"to_account": "0x" + "1" * 41}, "to_account", "string_too_long", "42"),
        (
            {"to_account": WALLET_A.upper().replace("0X", "0x")},
            "to_account",
            "same_account",
            "differ",
        ),
    ],
)
def test_crypto_transfer_rule_violation_names_the_field(
    overrides: dict[str, Any], field: str, error_type: str, message_part: str
) -> None:
    """Each crypto-transfer rule rejects a bad value with one error on the offending field."""
    loc, kind, message = _only_error(TransferV1, {**CRYPTO_TRANSFER, **overrides})
    assert (loc, kind) == ((field,), error_type)
    assert message_part in message


def test_fiat_transfer_between_wallets_reports_both_accounts() -> None:
    """A fiat currency with wallet addresses on both sides reports an error on each account."""
    with pytest.raises(ValidationError) as caught:
        TransferV1.model_validate({**CRYPTO_TRANSFER, "currency": "EUR"})
    assert [(error["loc"], error["type"]) for error in caught.value.errors()] == [
        (("from_account",), "account_kind"),
        (("to_account",), "account_kind"),
    ]


# --- IBAN helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "bban", "iban"),
    [
        ("DE", "370400440532013000", "DE89370400440532013000"),
        ("GB", "WEST12345698765432", "GB82WEST12345698765432"),
        ("NO", "86011117947", "NO9386011117947"),
    ],
)
def test_make_iban_computes_the_published_check_digits(country: str, bban: str, iban: str) -> None:
    """make_iban reproduces the check digits of well-known example IBANs."""
    assert make_iban(country, bban) == iban
    assert iban_checksum_ok(iban)


@pytest.mark.parametrize(
    "iban",
    [
        "DE89370400440532013001",
        "DE98370400440532013000",
        "de89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "",
    ],
)
def test_iban_checksum_rejects_typos_and_unnormalised_input(iban: str) -> None:
    """A changed digit, swapped check digits, lower case or spaces all fail the check."""
    assert not iban_checksum_ok(iban)


@pytest.mark.parametrize(
    ("country", "bban"),
    [("US", "12345678901"), ("DE", "37040044053201300"), ("DE", "37040044053201300a")],
)
def test_make_iban_rejects_unknown_country_or_wrong_bban(country: str, bban: str) -> None:
    """make_iban refuses countries without IBANs and BBANs of the wrong length or characters."""
    with pytest.raises(ValueError, match=r"IBANs|BBAN"):
        make_iban(country, bban)


def test_every_registry_length_is_a_valid_iban_length() -> None:
    """Every country in the IBAN registry table has a total length between 15 and 34."""
    assert all(15 <= length <= 34 for length in IBAN_LENGTHS.values())
