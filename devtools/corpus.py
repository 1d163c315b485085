"""The demo corpus: a deterministic mix of records whose outcomes are known in advance.

Used by ``make run`` and the integration tests. Every :class:`CorpusRecord` says which
outcome topic it must land in and with which reason code, by construction: valid records
obey the schemas and the simulator's verdict rules (``devtools.simulator.verdicts``); each kind
of bad input breaks exactly one thing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from schemas.records.iban import make_iban

OutcomeTopic = Literal["valid", "invalid", "dead-letter"]
OVERSIZED_BYTES = 300 * 1024

_COMPANIES = ("Acme Industrial", "Globex Logistics", "Initech Software", "Umbrella Pharma",
              "Stark Components", "Wayne Freight", "Hooli Cloud", "Vandelay Imports")  # fmt: skip
_LEGAL = ("GmbH", "BV", "SARL", "Ltd", "SpA", "AB", "Oy", "SL")
_DOMAINS = ("acme-industrial.de", "globex.nl", "initech.fr", "umbrella.it", "stark.se")
# country, VAT prefix, VAT number maker (None: no VAT id in that country)
_COUNTRIES: tuple[tuple[str, str | None, Callable[[random.Random], str] | None], ...] = (
    ("DE", "DE", lambda r: f"{r.randrange(10**8, 10**9)}"),
    ("NL", "NL", lambda r: f"{r.randrange(10**8, 10**9)}B01"),
    ("FR", "FR", lambda r: f"{r.randrange(10, 99)}{r.randrange(10**8, 10**9)}"),
    ("GR", "EL", lambda r: f"{r.randrange(10**8, 10**9)}"),
    ("US", None, None),
    ("CH", None, None),
)


@dataclass(frozen=True, slots=True)
class CorpusRecord:
    """One input record and the outcome it must get."""

    label: str
    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    record_id: str | None
    expected_topic: OutcomeTopic
    expected_reason: str  # "ok" for a plain valid record, else a reason code


def _safe(rng: random.Random, make: Callable[[random.Random], str]) -> str:
    """A value the sanctions screen will not flag (no ``dead``/``6666`` ending), nor VAT 000."""
    while True:
        value = make(rng)
        if not value.lower().endswith(("dead", "6666", "000")):
            return value


def _iban(rng: random.Random, tail: str = "") -> str:
    country, digits = rng.choice((("DE", 18), ("ES", 20), ("BE", 12)))
    body = "".join(str(rng.randrange(10)) for _ in range(digits - len(tail))) + tail
    return make_iban(country, body)


def _wallet(rng: random.Random, tail: str = "") -> str:
    return "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(40 - len(tail))) + tail


def _customer(rng: random.Random, i: int) -> dict[str, Any]:
    country, prefix, number = rng.choice(_COUNTRIES)
    data: dict[str, Any] = {
        "company_name": f"{rng.choice(_COMPANIES)} {i} {rng.choice(_LEGAL)}",
        "email": f"billing.{i}@{rng.choice(_DOMAINS)}",
        "country": country,
    }
    if prefix and number and rng.random() < 0.7:
        data["vat_id"] = prefix + _safe(rng, number)
    if rng.random() < 0.5:
        data["phone"] = f"+{rng.choice(('49', '31', '33', '1'))} {rng.randrange(10**8, 10**9)}"
    return data


def _transfer(rng: random.Random, crypto: bool) -> dict[str, Any]:
    if crypto:
        currency, places = rng.choice((("BTC", 8), ("ETH", 18), ("USDC", 6)))
        src, dst = _safe(rng, _wallet), _safe(rng, _wallet)
    else:
        currency, places = rng.choice((("EUR", 2), ("USD", 2), ("JPY", 0), ("CHF", 2)))
        src, dst = _safe(rng, _iban), _safe(rng, _iban)
    units = rng.randrange(1, 10**6)
    decimals = min(places, 2)
    amount = f"{units}.{rng.randrange(10**decimals):0{decimals}d}" if decimals else str(units)
    return {"from_account": src, "to_account": dst, "amount": amount, "currency": currency,
            "reference": f"INV-{rng.randrange(10**6):06d}"}  # fmt: skip


def _event(record_id: str, rtype: str, data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": record_id, "source": "/demo/producer", "type": rtype,
            "time": "2026-11-22T10:00:00Z", "datacontenttype": "application/json",
            "data": data}  # fmt: skip


def _structured(event: dict[str, Any]) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    return json.dumps(event).encode(), (("content-type", b"application/cloudevents+json"),)


def _binary(event: dict[str, Any]) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    attrs = {k: v for k, v in event.items() if k not in ("data", "datacontenttype")}
    headers = tuple((f"ce_{k}", str(v).encode()) for k, v in attrs.items())
    return json.dumps(event["data"]).encode(), (("content-type", b"application/json"), *headers)


def _schema_breakers(rng: random.Random, i: int) -> tuple[str, dict[str, Any]]:
    customer, transfer = _customer(rng, i), _transfer(rng, crypto=False)
    broken: list[tuple[str, dict[str, Any]]] = [
        ("customer.v1", {**customer, "email": "not-an-email"}),
        ("customer.v1", {**customer, "country": "XX"}),
        ("customer.v1", {**customer, "phone": "12345"}),
        ("customer.v1", {k: v for k, v in customer.items() if k != "company_name"}),
        ("customer.v1", {**customer, "loyalty_tier": "gold"}),
        ("transfer.v1", {**transfer, "amount": "0"}),
        ("transfer.v1", {**transfer, "currency": "JPY", "amount": "10.5"}),
        ("transfer.v1", {**transfer, "to_account": transfer["from_account"]}),
        ("transfer.v1", {**transfer, "to_account": _safe(rng, _wallet)}),
        ("transfer.v1", {**transfer, "currency": "EUR", "amount": "1.234"}),
    ]
    return rng.choice(broken)


def _rejected(rng: random.Random, i: int) -> tuple[str, dict[str, Any]]:
    customer = _customer(rng, i)
    options: list[tuple[str, dict[str, Any]]] = [
        ("customer.v1", {**customer, "email": f"bounce.{i}@{rng.choice(_DOMAINS)}"}),
        ("customer.v1", {**customer, "company_name": f"Sanctioned Trading {i} LLC"}),
        (
            "customer.v1",
            {**customer, "country": "DE", "vat_id": f"DE{rng.randrange(10**5, 10**6)}000"},
        ),
        ("transfer.v1", {**_transfer(rng, crypto=True), "to_account": _wallet(rng, "dead")}),
        ("transfer.v1", {**_transfer(rng, crypto=False), "from_account": _iban(rng, "6666")}),
    ]
    return rng.choice(options)


def build_corpus(count: int, *, keys: int = 25, seed: int = 7) -> list[CorpusRecord]:
    """``count`` records over ``keys`` keys, the last of them one oversized record.

    Roughly: 60% valid (structured and binary mode, customers and transfers), 14% schema
    violations, 12% upstream rejections, and dead letters (malformed bytes, unknown
    types, broken envelopes).
    """
    rng = random.Random(seed)
    out: list[CorpusRecord] = []
    for i in range(max(0, count - 1)):
        key = f"acct-{rng.randrange(keys):03d}".encode()
        rid = f"rec-{seed}-{i:07d}"
        roll = rng.random()
        if roll < 0.60:
            rtype = rng.choice(("customer.v1", "transfer.v1"))
            data = (
                _customer(rng, i) if rtype == "customer.v1" else _transfer(rng, rng.random() < 0.4)
            )
            binary = rng.random() < 0.25
            value, headers = (_binary if binary else _structured)(_event(rid, rtype, data))
            label = f"{rtype}.valid.{'binary' if binary else 'structured'}"
            out.append(CorpusRecord(label, key, value, headers, rid, "valid", "ok"))
        elif roll < 0.74:
            rtype, data = _schema_breakers(rng, i)
            value, headers = _structured(_event(rid, rtype, data))
            out.append(CorpusRecord(f"{rtype}.schema_invalid", key, value, headers, rid,
                                    "invalid", "schema.invalid"))  # fmt: skip
        elif roll < 0.86:
            rtype, data = _rejected(rng, i)
            value, headers = _structured(_event(rid, rtype, data))
            out.append(CorpusRecord(f"{rtype}.rejected", key, value, headers, rid,
                                    "invalid", "upstream.rejected"))  # fmt: skip
        elif roll < 0.91:
            garbage = bytes(rng.randrange(256) for _ in range(40))
            value = rng.choice((garbage, b'{"specversion": "1.0", "id": "tru', b"\xff\xfe\x00"))
            out.append(CorpusRecord("malformed.bytes", key, value, (), None, "dead-letter",
                                    "decode.failed"))  # fmt: skip
        elif roll < 0.96:
            value, headers = _structured(_event(rid, "invoice.v3", {"total": 1}))
            out.append(CorpusRecord("type.unknown", key, value, headers, rid, "dead-letter",
                                    "type.unknown"))  # fmt: skip
        else:
            event = {k: v for k, v in _event(rid, "customer.v1", _customer(rng, i)).items()
                     if k != "source"}  # fmt: skip
            value, headers = _structured(event)
            out.append(CorpusRecord("envelope.invalid", key, value, headers, rid, "dead-letter",
                                    "envelope.invalid"))  # fmt: skip
    if count > 0:
        rid = f"rec-{seed}-oversized"
        padding = {**_customer(rng, count), "company_name": "x" * OVERSIZED_BYTES}
        value, headers = _structured(_event(rid, "customer.v1", padding))
        out.append(CorpusRecord("record.too_large", b"acct-000", value, headers, rid,
                                "dead-letter", "record.too_large"))  # fmt: skip
    return out


def bench_records(count: int, *, keys: int = 1_000, seed: int = 11) -> list[CorpusRecord]:
    """``count`` valid ``customer.v1`` records in structured mode, each with its own e-mail.

    The benchmark's input: every record passes the schema and the e-mail check, and no two
    records ask the upstream the same question (so the response cache never answers).
    """
    rng = random.Random(seed)
    out = []
    for i in range(count):
        rid = f"bench-{seed}-{i:08d}"
        value, headers = _structured(_event(rid, "customer.v1", _customer(rng, i)))
        key = f"acct-{rng.randrange(keys):04d}".encode()
        out.append(CorpusRecord("customer.v1.valid.structured", key, value, headers, rid,
                                "valid", "ok"))  # fmt: skip
    return out
