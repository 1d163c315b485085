"""Per-record validation time of three JSON Schema validators on an order-like schema.

Measured once to choose the validator behind ``processor.jsonschema_types`` (issue 11).
Needs the three candidates, which are not project dependencies; run it in a scratch venv::

    python3 -m venv /tmp/jsv && /tmp/jsv/bin/pip install -q \
        jsonschema-rs==0.60.3 fastjsonschema==2.22.3 jsonschema==4.26.0
    /tmp/jsv/bin/python docs/bench/jsonschema_validators.py

For each validator: the time to validate one valid record, one invalid record (first error
only, as a yes/no), and one invalid record with *every* violation collected with its
instance path (what the pipeline needs: pydantic reports every field at once).
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable
from typing import Any

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "order.v1",
    "type": "object",
    "additionalProperties": False,
    "required": ["order_id", "customer_email", "amount", "currency", "lines"],
    "properties": {
        "order_id": {"type": "string", "pattern": "^ord_[A-Za-z0-9]{8,32}$"},
        "customer_email": {"type": "string", "format": "email", "maxLength": 254},
        "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000000},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP", "CHF", "JPY"]},
        "note": {"anyOf": [{"type": "string", "maxLength": 500}, {"type": "null"}]},
        "lines": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {"$ref": "#/$defs/Line"},
        },
    },
    "$defs": {
        "Line": {
            "type": "object",
            "additionalProperties": False,
            "required": ["sku", "quantity", "unit_price"],
            "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z0-9-]{3,40}$"},
                "quantity": {"type": "integer", "minimum": 1, "maximum": 10000},
                "unit_price": {"type": "number", "minimum": 0},
            },
        }
    },
}

VALID: dict[str, Any] = {
    "order_id": "ord_A1B2C3D4E5",
    "customer_email": "ada@example.com",
    "amount": 129.5,
    "currency": "EUR",
    "note": None,
    "lines": [
        {"sku": "SKU-1001", "quantity": 2, "unit_price": 19.75},
        {"sku": "SKU-2002", "quantity": 1, "unit_price": 90.0},
        {"sku": "SKU-3003", "quantity": 3, "unit_price": 0.0},
    ],
}

# Five violations: pattern, format, enum, a nested type, a nested missing property.
INVALID: dict[str, Any] = {
    **VALID,
    "order_id": "bad id",
    "customer_email": "not-an-email",
    "currency": "XXX",
    "lines": [
        {"sku": "SKU-1001", "quantity": "two", "unit_price": 19.75},
        {"sku": "SKU-2002", "unit_price": 90.0},
    ],
}


def _per_record_us(fn: Callable[[], object]) -> float:
    timer = timeit.Timer(fn)
    loops, _ = timer.autorange()
    best = min(timer.repeat(repeat=5, number=loops))
    return best / loops * 1e6


def _rs() -> dict[str, Any]:
    import jsonschema_rs

    v = jsonschema_rs.validator_for(SCHEMA, validate_formats=True)
    errors = [(list(e.instance_path), e.message) for e in v.iter_errors(INVALID)]
    return {
        "valid": _per_record_us(lambda: v.is_valid(VALID)),
        "invalid (yes/no)": _per_record_us(lambda: v.is_valid(INVALID)),
        "invalid (all errors)": _per_record_us(lambda: list(v.iter_errors(INVALID))),
        "errors": errors,
    }


def _fast() -> dict[str, Any]:
    import fastjsonschema

    v = fastjsonschema.compile(SCHEMA)

    def first_error() -> object:
        try:
            return v(INVALID)
        except fastjsonschema.JsonSchemaValueException as exc:
            return exc

    err = first_error()
    assert isinstance(err, fastjsonschema.JsonSchemaValueException)
    return {
        "valid": _per_record_us(lambda: v(VALID)),
        "invalid (yes/no)": _per_record_us(first_error),
        "invalid (all errors)": None,  # raises on the first violation; no way to collect all
        "errors": [(err.path, err.message)],
    }


def _py() -> dict[str, Any]:
    import jsonschema

    cls = jsonschema.validators.validator_for(SCHEMA)
    v = cls(SCHEMA, format_checker=cls.FORMAT_CHECKER)
    errors = [(list(e.absolute_path), e.message) for e in v.iter_errors(INVALID)]
    return {
        "valid": _per_record_us(lambda: v.is_valid(VALID)),
        "invalid (yes/no)": _per_record_us(lambda: v.is_valid(INVALID)),
        "invalid (all errors)": _per_record_us(lambda: list(v.iter_errors(INVALID))),
        "errors": errors,
    }


def main() -> None:
    print(f"python {sys.version.split()[0]}")
    for name, run in (("jsonschema-rs", _rs), ("fastjsonschema", _fast), ("jsonschema", _py)):
        result = run()
        errors = result.pop("errors")
        row = ", ".join(f"{k} {'n/a' if v is None else f'{v:.1f} us'}" for k, v in result.items())
        print(f"{name}: {row}; {len(errors)} violation(s) reported")
        for error in errors:
            print("   ", json.dumps(error))


if __name__ == "__main__":
    main()
