"""The input's JSON parser: orjson first, the standard parser's values and errors always."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from processor.decode import _json, _text
from processor.errors import DecodeError


def _standard(raw: bytes) -> tuple[str, Any]:
    """What the input parser gave before orjson (its code then): the standard library's."""
    try:
        return ("value", json.loads(_text(raw, "value")))
    except DecodeError as exc:
        return ("error", str(exc))
    except json.JSONDecodeError as exc:
        return ("error", f"value is not JSON: {exc.msg} at line {exc.lineno} col {exc.colno}")
    except RecursionError:
        return ("error", "value is nested too deeply to decode")
    except ValueError as exc:
        return ("error", f"value is not decodable JSON: {str(exc)[:200]}")


def _ours(raw: bytes) -> tuple[str, Any]:
    try:
        return ("value", _json(raw, "value"))
    except DecodeError as exc:
        return ("error", str(exc))


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types (1 is not 1.0, -0.0 is not 0.0, NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    return bool(a == b)


EDGES = [
    b"{}",
    b'  {"a": 1}  ',
    b"[]",
    b"0",
    b"-0",
    b"-0.0",
    b"1.0",
    b"1e5",
    b"1E-5",
    b"1e+2",
    b"0.1",
    b"5e-324",
    b"2.2250738585072014e-308",
    b"1.7976931348623157e308",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b"123456789012345678901234567890",
    b"1" * 5000,
    b"0.12345678901234567890123",
    b"[1, 100000000000000000000]",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"[NaN]",
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'"\\ud83d\\ude00"',
    b'"\\u0000"',
    b'"a\x00b"',
    b'"\x1f"',
    b"\xef\xbb\xbf{}",
    b"{}\xef\xbb\xbf",
    b"\xff",
    b'"\xc0\xaf"',
    b'"\xed\xa0\x80"',
    b"",
    b"   ",
    b"{} x",
    b"{,}",
    b"[1,]",
    b'{"a":1,}',
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"0x10",
    b"\x0b{}",
    b"\xc2\xa0{}",
    b"\t\n\r{}\t\n\r",
    b'{"a": 1, "a": 2}',
    b'{"a": {"b": [true, false, null]}}',
    b"tru",
    b"nul",
    b"[" * 1023 + b"]" * 1023,
    b"[" * 1025 + b"]" * 1025,
    b"[" * 5000 + b"]" * 5000,
    b'{"k": "' + "é€😀".encode() * 100 + b'"}',
    b'"\\x41"',
    b"'a'",
    b"[1 2]",
]


@pytest.mark.parametrize("raw", EDGES, ids=lambda raw: repr(raw[:30]))
def test_an_edge_case_parses_or_fails_as_the_standard_parser_says(raw: bytes) -> None:
    theirs, ours = _standard(raw), _ours(raw)
    assert theirs[0] == ours[0], (theirs, ours)
    if theirs[0] == "value":
        assert _same(theirs[1], ours[1]), (theirs, ours)
    else:
        assert theirs[1] == ours[1]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(2**70), 2**70) >> rng.randrange(70)
    if kind == 2:
        return rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randint(-300, 300)])
    if kind == 3:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)]))
                       for _ in range(rng.randrange(12)))  # fmt: skip
    if kind == 4:
        return rng.randrange(-1000, 1000)
    if kind in (5, 6):
        return {f"k{i}{rng.randrange(99)}": _random_value(rng, depth + 1)
                for i in range(rng.randrange(5))}  # fmt: skip
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]


def test_random_documents_parse_to_the_same_values_of_the_same_types() -> None:
    rng = random.Random(15)
    for _ in range(2_000):
        value = _random_value(rng)
        raw = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()
        theirs, ours = _standard(raw), _ours(raw)
        assert theirs[0] == ours[0] == "value"
        assert _same(theirs[1], ours[1]), raw
