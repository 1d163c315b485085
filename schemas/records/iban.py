"""International Bank Account Numbers (ISO 13616): the registry lengths and the mod-97 check.

An IBAN is a country code, two check digits and a country-specific BBAN. The check digits
make the whole number, read with letters as 10..35 and the first four characters moved to
the end, equal 1 modulo 97; that catches every single-character typo and most swaps.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final

__all__ = ["IBAN_LENGTHS", "IBAN_SHAPE", "iban_checksum_ok", "make_iban"]

#: Total IBAN length per country, from the SWIFT IBAN registry. A country not listed here
#: does not issue IBANs.
IBAN_LENGTHS: Final = MappingProxyType(
    {
        "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
        "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
        "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
        "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
        "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
        "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
        "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
        "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
        "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
        "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
        "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
    }
)  # fmt: skip

_BBAN = re.compile(r"[0-9A-Z]{11,30}")
#: Country code, two check digits, 11 to 30 letters or digits: any IBAN, before its checks.
IBAN_SHAPE: Final = re.compile(r"[A-Z]{2}[0-9]{2}[0-9A-Z]{11,30}")


def _mod97(text: str) -> int:
    """Return ``text`` read as a number (``A`` = 10 ... ``Z`` = 35) modulo 97."""
    return int("".join(str(int(char, 36)) for char in text)) % 97


def iban_checksum_ok(iban: str) -> bool:
    """Tell whether ``iban`` (already without spaces, upper-case) passes the ISO 13616 check.

    Only the characters and the check digits are examined, not the registry length.
    """
    if IBAN_SHAPE.fullmatch(iban) is None:
        return False
    return _mod97(iban[4:] + iban[:4]) == 1


def make_iban(country: str, bban: str) -> str:
    """Build a valid IBAN from a country code and a BBAN by computing the check digits.

    Args:
        country: An ISO 3166-1 alpha-2 code that issues IBANs, e.g. ``"DE"``.
        bban: The national account number, digits and upper-case letters, of the length
            the country's IBAN format needs (total length minus four).

    Raises:
        ValueError: If the country issues no IBANs or the BBAN has the wrong characters or length.
    """
    length = IBAN_LENGTHS.get(country)
    if length is None:
        raise ValueError(f"{country!r} does not issue IBANs")
    if _BBAN.fullmatch(bban) is None or len(bban) != length - 4:
        raise ValueError(
            f"a {country} BBAN is {length - 4} digits or upper-case letters, got {bban!r}"
        )
    check = 98 - _mod97(bban + country + "00")
    return f"{country}{check:02d}{bban}"
