"""Generated hostile records: what a careless or malicious producer can put on the input topic.

:func:`hostile_corpus` makes ``count`` raw Kafka records from a seed, spread over classes
(:data:`CLASSES`): random bytes, invalid UTF-8, deep nesting, huge numbers and strings, lone
surrogates (in values and field names), control and bidirectional characters, odd header
bytes and null header values, broken binary-mode ``ce_*`` headers, null keys and values,
sizes around every limit (``engine.max_record_bytes``, the producer's request size, the
broker's message size), and well-formed records mixed in. Each record says which bad-input
outcome it may get; the property every record must satisfy (one outcome, a bad-input reason,
the process never stops) is the same for all of them. Used by the hostile-corpus tests.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

#: Reason codes that say "the input is bad" (README, Reason codes); never internal.error.
BAD_INPUT = frozenset(
    {"decode.failed", "envelope.invalid", "record.too_large", "type.unknown", "schema.invalid"}
)
MAX_RECORD_BYTES = 262_144  # the engine's default
PRODUCER_REQUEST_BYTES = 1_048_576  # the processor's producer_max_request_bytes default
BROKER_MESSAGE_BYTES = 1_048_588  # Kafka's default message.max.bytes


@dataclass(frozen=True)
class HostileRecord:
    """One raw record and its class."""

    label: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def size(self) -> int:
        return (
            len(self.key or b"")
            + len(self.value or b"")
            + sum(len(k) + len(v or b"") for k, v in self.headers)
        )


def _event(data: str, *, rtype: str = "customer.v1", rid: str = "h", extra: str = "") -> bytes:
    """A structured CloudEvent whose ``data`` (and extra members) are JSON text as given."""
    head = (f'{{"specversion": "1.0", "id": {json.dumps(rid)}, "source": "/hostile", '
            f'"type": {json.dumps(rtype)}{extra}')  # fmt: skip
    return f'{head}, "data": {data}}}'.encode("utf-8", "surrogatepass")


def _customer(**change: object) -> str:
    body: dict[str, object] = {"company_name": "Acme GmbH", "email": "ops@acme.de",
                               "country": "DE", **change}  # fmt: skip
    return json.dumps(body)


def _nested(rng: random.Random) -> bytes:
    depth = rng.choice((200, 1_000, 5_000, 20_000))
    opening, closing = rng.choice((("[", "]"), ('{"a":', "}")))
    return _event(opening * depth + "1" + closing * depth, rid=f"deep-{depth}")


def _huge_number(rng: random.Random) -> bytes:
    number = rng.choice(("9" * 5_000, "-" + "1" * 20_000, "1e999999", "NaN", "-Infinity", "-0"))
    return _event(_customer().replace('"DE"', number), rid="num")


def _huge_string(rng: random.Random) -> bytes:
    size = rng.choice((10_000, 100_000, MAX_RECORD_BYTES - 300))
    return _event(_customer(company_name="x" * size), rid="long")


def _surrogate(rng: random.Random) -> bytes:
    where = rng.choice(("value", "key", "id", "type"))
    if where == "value":
        return _event('{"company_name": "\\ud800 Acme", "email": "a@b.de", "country": "DE"}')
    if where == "key":
        return _event('{"\\udfff": 1, "company_name": "A"}')
    if where == "id":
        return _event(_customer(), rid="\ud83d")
    return _event(_customer(), rtype="customer.v1\udc80")


def _control(rng: random.Random) -> bytes:
    chars = "".join(
        rng.choice("\x00\x01\x07\x1b\x7f\u202e\u2066\u200f\ufeff\uffff") for _ in range(8)
    )
    change = rng.choice(({"company_name": chars}, {chars: "x"}, {"email": chars + "@a.de"}))
    return _event(json.dumps({"company_name": "A", "email": "a@b.de", "country": "DE", **change}))


def _invalid_utf8(rng: random.Random) -> bytes:
    good = _event(_customer())
    cut = rng.randrange(len(good))
    return (
        good[:cut]
        + rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80"))
        + good[cut:]
    )


def _random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randrange(0, 300))


def _binary_headers(rng: random.Random) -> tuple[bytes, tuple[tuple[str, bytes | None], ...]]:
    headers: dict[str, bytes | None] = {
        "ce_specversion": b"1.0", "ce_id": b"b-1", "ce_source": b"/hostile",
        "ce_type": b"customer.v1", "content-type": b"application/json",
    }  # fmt: skip
    victim = rng.choice(tuple(headers))
    headers[victim] = rng.choice((None, b"\xff\xfe", b"", b"\x00" * 3, "\u202e".encode()))
    if rng.random() < 0.3:
        headers.pop("ce_id")
    return _customer().encode(), tuple(headers.items())


def _odd_headers(rng: random.Random) -> tuple[tuple[str, bytes | None], ...]:
    return tuple(
        (rng.choice(("x-trace", "traceparent", "\u202eevil", "ce_", "dlq.reason", "k" * 300)),
         rng.choice((None, b"\xff", b"", rng.randbytes(20), b"\x00")))
        for _ in range(rng.randrange(1, 6))
    )  # fmt: skip


def _near_limits() -> list[HostileRecord]:
    """Values just under, at and over each size limit (a few, each up to a megabyte)."""
    out = []
    for limit, deltas in ((MAX_RECORD_BYTES, (-64, -1, 0, 1)),
                          (PRODUCER_REQUEST_BYTES, (-400, -100)),
                          (BROKER_MESSAGE_BYTES, (-600,))):  # fmt: skip
        for delta in deltas:
            rid = f"near-{limit}{delta:+d}"
            filler = limit + delta - len(_event(_customer(company_name=""), rid=rid))
            event = _event(_customer(company_name="y" * filler), rid=rid)  # exactly that size
            out.append(HostileRecord(f"near a size limit ({limit}{delta:+d})", b"big", event))
    return out


def _envelope(rng: random.Random) -> bytes:
    return rng.choice((
        b'{"specversion": "1.0"}',
        b'{"specversion": "0.3", "id": "a", "source": "/s", "type": "t"}',
        b"[]", b"null", b'"just a string"', b"{}", _event(_customer(), rtype="no.such.type"),
        _event(_customer(), extra=', "time": "not a time"'),
        _event(_customer(), extra=', "specversion": "2.0"'),
    ))  # fmt: skip


def _schema(rng: random.Random) -> bytes:
    return _event(rng.choice((
        _customer(country="ZZ"), _customer(email=""), '{"company_name": 5}', "[]", "null",
        _customer(unknown_field=[1, 2, 3]), _customer(email="a" * 400 + "@b.de"),
    )))  # fmt: skip


Maker = Callable[[random.Random], HostileRecord]


def _key(rng: random.Random) -> bytes | None:
    return rng.choice((None, b"", b"k", rng.randbytes(8), "\u202ekey".encode(), b"\xff" * 4))


CLASSES: dict[str, Maker] = {
    "random bytes": lambda r: HostileRecord("random bytes", _key(r), _random_bytes(r)),
    "invalid utf-8": lambda r: HostileRecord("invalid utf-8", _key(r), _invalid_utf8(r)),
    "deep nesting": lambda r: HostileRecord("deep nesting", _key(r), _nested(r)),
    "huge number": lambda r: HostileRecord("huge number", _key(r), _huge_number(r)),
    "huge string": lambda r: HostileRecord("huge string", _key(r), _huge_string(r)),
    "lone surrogate": lambda r: HostileRecord("lone surrogate", _key(r), _surrogate(r)),
    "control and bidi": lambda r: HostileRecord("control and bidi", _key(r), _control(r)),
    "odd headers": lambda r: HostileRecord(
        "odd headers", _key(r), _event(_customer()), _odd_headers(r)
    ),
    "broken binary mode": lambda r: HostileRecord(
        "broken binary mode", _key(r), *_binary_headers(r)
    ),
    "null value": lambda r: HostileRecord("null value", r.choice((None, b"k")), None),
    "bad envelope": lambda r: HostileRecord("bad envelope", _key(r), _envelope(r)),
    "schema breaker": lambda r: HostileRecord("schema breaker", _key(r), _schema(r)),
    "well-formed": lambda r: HostileRecord("well-formed", b"good", _event(_customer(), rid="ok")),
}
#: Relative frequency of each class (huge strings are large: rarer).
WEIGHTS = {name: 1.0 for name in CLASSES} | {"huge string": 0.2}


def hostile_corpus(count: int, seed: int = 1) -> list[HostileRecord]:
    """``count`` hostile records from ``seed`` (the same seed, the same records): the
    records near a size limit once each, the rest drawn from :data:`CLASSES`."""
    rng = random.Random(seed)
    names = list(CLASSES)
    weights = [WEIGHTS[n] for n in names]
    near = _near_limits()
    out = [CLASSES[rng.choices(names, weights)[0]](rng) for _ in range(count - len(near))]
    for record in near:
        out.insert(rng.randrange(len(out) + 1), record)
    return out
