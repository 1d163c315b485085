"""The e-mail fast path agrees with email-validator (pydantic's EmailStr) on every address.

``customer.v1`` accepts plain ASCII addresses without calling email-validator (its full
IDNA/Unicode check was the costliest step of a customer record). These tests put the two
side by side on hand-picked edge cases and on thousands of generated near-misses: both
must accept with the same (lower-cased) result, or both reject.
"""

from __future__ import annotations

import random

import pytest
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from schemas.records.customer_v1 import _PLAIN_EMAIL, _check_email

EDGE_CASES = [
    "billing.1@acme-industrial.de",
    "First.Last+tag@Example.COM",
    "a@b.co",
    "a@b.c",  # one-letter TLD
    "a@b.c0",  # numeric in TLD
    "a@b.123",  # numeric TLD
    "a@localhost",
    "a@mail.local",
    "a@x.test",
    "a@x.TEST",
    "a@x.invalid",
    "a@x.onion",
    "a@10.in-addr.arpa",
    "a@example",  # no dot
    "a..b@x.com",
    ".a@x.com",
    "a.@x.com",
    "a@-x.com",
    "a@x-.com",
    "a@x..com",
    "a@x.com.",
    "a@xn--nxasmq6b.com",
    "a@xn--zz.com",
    "a@ab--cd.com",
    "a@a_b.com",
    "a_b@x.com",
    "a-b@x.com",
    "-a@x.com",
    "+@x.com",
    "a" * 64 + "@x.com",
    "a" * 65 + "@x.com",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a@" + ".".join(["b" * 63] * 3) + ".com",
    "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".example.com",
    "a@x.c" + "o" * 62,
    "a@x.c" + "o" * 63,
    "a@b@x.com",
    "a b@x.com",
    " a@x.com",
    "a@x.com ",
    '"quoted"@x.com',
    "Bob <bob@x.com>",
    "ünicode@x.com",
    "a@bücher.de",
    "a@x.xn--p1ai",
    "",
    "@x.com",
    "a@",
]


def _verdict(check: object, address: str) -> tuple[str, str]:
    try:
        result = check(address)  # type: ignore[operator]
    except PydanticCustomError as exc:
        return "rejected", exc.type
    return "accepted", str(result).lower()


def _reference(address: str) -> str:
    return validate_email(address)[1]


@pytest.mark.parametrize("address", EDGE_CASES)
def test_fast_path_agrees_with_email_validator_on_edge_cases(address: str) -> None:
    """The ASCII fast path says exactly what email-validator says on each edge case."""
    assert _verdict(_check_email, address) == _verdict(_reference, address)


def _near_miss(rng: random.Random) -> str:
    local_chars = "abcXYZ019_+-.."
    host_chars = "abcXYZ019-_."
    local = "".join(rng.choice(local_chars) for _ in range(rng.choice((1, 3, 8, 63, 64, 65))))
    labels = [
        "".join(rng.choice(host_chars) for _ in range(rng.choice((1, 2, 5, 62, 63, 64))))
        for _ in range(rng.randrange(1, 4))
    ]
    tld = rng.choice(("com", "de", "C0M", "x", "io", "test", "local", "xn--p1ai", "123", ""))
    return f"{local}@{'.'.join([*labels, tld])}"


def test_fast_path_agrees_with_email_validator_on_generated_addresses() -> None:
    """On 10,000 generated near-misses the fast path and email-validator agree."""
    rng = random.Random(5)
    addresses = [_near_miss(rng) for _ in range(10_000)]
    plain = [a for a in addresses if _PLAIN_EMAIL.fullmatch(a)]
    assert len(plain) > 200, "the generator must exercise the fast path"
    disagreements = [
        (a, _verdict(_check_email, a), _verdict(_reference, a))
        for a in addresses
        if _verdict(_check_email, a) != _verdict(_reference, a)
    ]
    assert disagreements == []
