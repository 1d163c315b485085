"""Tests of the schema compatibility rules, on hand-written and pydantic-generated schemas."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from processor.schema_compat import Change, compare, render_report


def _obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> Any:
    return {"type": "object", "properties": properties, "required": required or [], **extra}


def _kinds(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [(c.path, c.kind, c.breaking) for c in compare(old, new)]


def test_identical_schemas_have_no_changes() -> None:
    """A schema compared with itself is compatible and lists nothing."""
    schema = _obj({"a": {"type": "string", "maxLength": 5}}, ["a"])
    assert compare(schema, schema) == []
    assert render_report([]) == "compatible: no changes\n"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            _obj({"a": {"type": "string"}, "b": {"type": "string"}}),
            _obj({"a": {"type": "string"}}),
            [("b", "property.removed", True)],
            id="property removed",
        ),
        pytest.param(
            _obj({"a": {"type": "string"}}),
            _obj({"a": {"type": "string"}, "b": {"type": "string"}}),
            [("b", "property.added", False)],
            id="optional property added",
        ),
        pytest.param(
            _obj({"a": {"type": "string"}}),
            _obj({"a": {"type": "string"}, "b": {"type": "string"}}, ["b"]),
            [("b", "property.added_required", True)],
            id="required property added",
        ),
        pytest.param(
            _obj({"a": {"type": "string"}}),
            _obj({"a": {"type": "string"}}, ["a"]),
            [("a", "required.added", True)],
            id="property newly required",
        ),
        pytest.param(
            _obj({"a": {"type": "string"}}, ["a"]),
            _obj({"a": {"type": "string"}}),
            [("a", "required.removed", True)],
            id="property no longer required",
        ),
        pytest.param(
            _obj({"n": {"type": "number"}}),
            _obj({"n": {"type": "integer"}}),
            [("n", "type.narrowed", True)],
            id="number narrowed to integer",
        ),
        pytest.param(
            _obj({"n": {"type": "integer"}}),
            _obj({"n": {"type": "number"}}),
            [("n", "type.widened", False)],
            id="integer widened to number",
        ),
        pytest.param(
            _obj({"n": {"type": ["string", "null"]}}),
            _obj({"n": {"type": "string"}}),
            [("n", "type.narrowed", True)],
            id="type removed from a list",
        ),
        pytest.param(
            _obj({"n": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}),
            _obj({"n": {"anyOf": [{"type": "string"}]}}),
            [("n", "type.narrowed", True)],
            id="anyOf branch removed",
        ),
        pytest.param(
            _obj({"c": {"type": "string", "enum": ["EUR", "USD"]}}),
            _obj({"c": {"type": "string", "enum": ["EUR"]}}),
            [("c", "enum.value_removed", True)],
            id="enum value removed",
        ),
        pytest.param(
            _obj({"c": {"type": "string", "enum": ["EUR"]}}),
            _obj({"c": {"type": "string", "enum": ["EUR", "USD"]}}),
            [("c", "enum.value_added", False)],
            id="enum value added",
        ),
        pytest.param(
            _obj({"c": {"type": "string"}}),
            _obj({"c": {"type": "string", "enum": ["EUR"]}}),
            [("c", "enum.added", True)],
            id="enum added",
        ),
        pytest.param(
            _obj({"c": {"const": "EUR"}}),
            _obj({"c": {"const": "USD"}}),
            [("c", "enum.value_removed", True), ("c", "enum.value_added", False)],
            id="const changed",
        ),
        pytest.param(
            _obj({"x": {"type": "number"}}),
            _obj({"x": {"type": "number", "multipleOf": 0.01}}),
            [("x", "constraint.tightened", True)],
            id="multipleOf added",
        ),
        pytest.param(
            _obj({"s": {"type": "string", "maxLength": 10}}),
            _obj({"s": {"type": "string", "maxLength": 5}}),
            [("s", "constraint.tightened", True)],
            id="maxLength lowered",
        ),
        pytest.param(
            _obj({"s": {"type": "string", "maxLength": 5}}),
            _obj({"s": {"type": "string", "maxLength": 10}}),
            [("s", "constraint.relaxed", False)],
            id="maxLength raised",
        ),
        pytest.param(
            _obj({"s": {"type": "string"}}),
            _obj({"s": {"type": "string", "minLength": 1}}),
            [("s", "constraint.tightened", True)],
            id="minLength added",
        ),
        pytest.param(
            _obj({"x": {"type": "number", "minimum": 0}}),
            _obj({"x": {"type": "number", "minimum": 1}}),
            [("x", "constraint.tightened", True)],
            id="minimum raised",
        ),
        pytest.param(
            _obj({"x": {"type": "number", "maximum": 10}}),
            _obj({"x": {"type": "number"}}),
            [("x", "constraint.relaxed", False)],
            id="maximum dropped",
        ),
        pytest.param(
            _obj({"l": {"type": "array", "maxItems": 10}}),
            _obj({"l": {"type": "array", "maxItems": 3}}),
            [("l", "constraint.tightened", True)],
            id="maxItems lowered",
        ),
        pytest.param(
            _obj({"a": {"type": "string"}}),
            _obj({"a": {"type": "string"}}, additionalProperties=False),
            [("", "additional_properties.closed", True)],
            id="additionalProperties false added",
        ),
        pytest.param(
            _obj({"a": {"type": "string"}}, additionalProperties=False),
            _obj({"a": {"type": "string"}}),
            [("", "additional_properties.opened", False)],
            id="additionalProperties false dropped",
        ),
        pytest.param(
            _obj({"s": {"type": "string"}}),
            _obj({"s": {"type": "string", "pattern": "^[A-Z]+$"}}),
            [("s", "pattern.added", True)],
            id="pattern added",
        ),
        pytest.param(
            _obj({"s": {"type": "string", "pattern": "^[A-Z]+$"}}),
            _obj({"s": {"type": "string"}}),
            [("s", "pattern.removed", False)],
            id="pattern dropped",
        ),
        pytest.param(
            _obj({"s": {"type": "string"}}),
            _obj({"s": {"type": "string", "format": "email"}}),
            [("s", "format.added", True)],
            id="format added",
        ),
        pytest.param(
            _obj({"s": {"type": "string", "description": "old"}}),
            _obj({"s": {"type": "string", "description": "new"}}),
            [("s", "annotation.changed", False)],
            id="description changed",
        ),
    ],
)
def test_each_rule(
    old: dict[str, Any], new: dict[str, Any], expected: list[tuple[str, str, bool]]
) -> None:
    """Each rule yields exactly its change, breaking or not."""
    assert _kinds(old, new) == expected


def test_nested_objects_and_array_items_are_walked() -> None:
    """Changes inside array items and nested objects carry the instance path."""
    line_old = _obj({"sku": {"type": "string"}, "qty": {"type": "integer"}}, ["sku"])
    line_new = _obj({"sku": {"type": "string", "maxLength": 8}}, ["sku"])
    old = _obj({"lines": {"type": "array", "items": line_old}, "c": _obj({"e": {}})})
    new = _obj({"lines": {"type": "array", "items": line_new}, "c": _obj({})})
    assert _kinds(old, new) == [
        ("c.e", "property.removed", True),
        ("lines[*].qty", "property.removed", True),
        ("lines[*].sku", "constraint.tightened", True),
    ]


def test_refs_are_resolved_before_comparing() -> None:
    """A change inside a $defs entry is reported where the $ref is used."""
    old = {**_obj({"l": {"$ref": "#/$defs/L"}}), "$defs": {"L": _obj({"a": {"type": "string"}})}}
    new = {**_obj({"l": {"$ref": "#/$defs/L"}}), "$defs": {"L": _obj({})}}
    assert _kinds(old, new) == [("l.a", "property.removed", True)]


def test_draft_7_definitions_are_resolved() -> None:
    """Draft 7's ``definitions`` are resolved like ``$defs``."""
    defs = {"L": _obj({"a": {"type": "string", "maxLength": 3}})}
    old = {**_obj({"l": {"$ref": "#/definitions/L"}}), "definitions": defs}
    new = {**_obj({"l": {"$ref": "#/definitions/L"}}), "definitions": {"L": _obj({})}}
    assert _kinds(old, new) == [("l.a", "property.removed", True)]


@pytest.mark.parametrize("ref", ["#/$defs/Missing", "https://example.com/remote.json"])
def test_an_unresolvable_ref_is_an_error_and_nothing_is_fetched(ref: str) -> None:
    """A $ref that does not resolve within the schema raises ValueError, offline."""
    schema = _obj({"a": {"$ref": ref}})
    with pytest.raises(ValueError, match="cannot resolve a \\$ref"):
        compare(schema, schema)


def test_recursive_schemas_terminate() -> None:
    """A self-referencing $defs entry is compared without looping."""
    node = _obj({"child": {"anyOf": [{"$ref": "#/$defs/N"}, {"type": "null"}]}})
    schema = {**_obj({"n": {"$ref": "#/$defs/N"}}), "$defs": {"N": node}}
    assert compare(schema, schema) == []


class OrderV1(BaseModel):
    order_id: str = Field(max_length=64)
    amount: float = Field(gt=0)
    currency: Literal["EUR", "USD"]
    note: str | None = Field(default=None, max_length=500)
    lines: list[LineV1] = Field(max_length=100)


class LineV1(BaseModel):
    sku: str
    quantity: int = Field(ge=1)


class LineV2(BaseModel):
    sku: str = Field(pattern=r"^[A-Z0-9-]+$")
    quantity: int = Field(ge=1)
    unit_price: float | None = None


class OrderV2(BaseModel):
    order_id: str = Field(max_length=32)
    amount: float = Field(gt=0)
    currency: Literal["EUR"]
    note: str | None = Field(default=None, max_length=1000)
    lines: list[LineV2] = Field(max_length=100)
    channel: str = "web"


OrderV1.model_rebuild()


def test_pydantic_generated_schemas_compare_through_defs_and_optionals() -> None:
    """A model and a changed copy: narrowed fields break, widened and new optional ones do not."""
    changes = compare(OrderV1.model_json_schema(), OrderV2.model_json_schema())
    found = {(c.path, c.kind, c.breaking) for c in changes}
    assert found >= {
        ("order_id", "constraint.tightened", True),
        ("currency", "enum.value_removed", True),
        ("lines[*].sku", "pattern.added", True),
        ("note", "constraint.relaxed", False),
        ("channel", "property.added", False),
        ("lines[*].unit_price", "property.added", False),
    }
    assert not [c for c in changes if c.path == "amount"]


def test_making_a_pydantic_field_optional_is_reported_both_ways() -> None:
    """``str`` -> ``str | None``: no longer required (breaking) and now accepts null."""

    class Before(BaseModel):
        email: str

    class After(BaseModel):
        email: str | None = None

    kinds = {
        (c.path, c.kind, c.breaking)
        for c in compare(Before.model_json_schema(), After.model_json_schema())
    }
    assert ("email", "required.removed", True) in kinds
    assert ("email", "type.widened", False) in kinds


def test_report_lists_breaking_changes_first_with_a_verdict() -> None:
    """render_report gives a verdict line, then breaking changes, then compatible ones."""
    changes = [
        Change("b", "property.added", False, "b: new optional property"),
        Change("a", "property.removed", True, "a: property removed"),
    ]
    report = render_report(changes).splitlines()
    assert report[0] == "BREAKING: 1 breaking change(s), 1 compatible"
    assert report[1].split() == ["breaking", "property.removed", "a:", "property", "removed"]
    assert report[2].split()[:2] == ["compatible", "property.added"]
    compatible = render_report(changes[:1]).splitlines()[0]
    assert compatible == "compatible: 1 compatible change(s)"
