"""Tests of field paths, path templates and path checks against record JSON Schemas."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from processor.errors import FieldMissingError
from processor.fieldpaths import (
    EACH,
    MISSING,
    check_path,
    compile_template,
    parse_path,
    render,
)

ORDER: dict[str, Any] = {
    "id": "o-1",
    "customer": {"id": "c/7", "email": "a@example.com", "vip": True},
    "lines": [{"sku": "A-1", "quantity": 2}, {"sku": "B 2", "quantity": 1}, {"quantity": 5}],
    "note": None,
}


class Line(BaseModel):
    sku: str
    quantity: int


class Customer(BaseModel):
    id: str
    email: str


class Order(BaseModel):
    id: str
    customer: Customer
    billing: Customer | None = None
    lines: list[Line]
    tags: list[str] = []
    attributes: dict[str, Any] = {}


ORDER_SCHEMA = Order.model_json_schema()


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("email", ("email",)),
        ("customer.email", ("customer", "email")),
        ("lines[*].sku", ("lines", EACH, "sku")),
        ("lines[0].sku", ("lines", 0, "sku")),
        ("matrix[1][2]", ("matrix", 1, 2)),
        ("_private.x_1", ("_private", "x_1")),
    ],
)
def test_paths_parse_into_keys_indexes_and_each(text: str, segments: tuple[Any, ...]) -> None:
    """Each form of the grammar parses into its segments and keeps its text."""
    path = parse_path(text)
    assert path.segments == segments
    assert str(path) == text


@pytest.mark.parametrize(
    "text",
    ["", ".email", "email.", "a..b", "lines[x]", "lines[", "lines[-1]", "a b", "1st", "a[0]b"],
)
def test_malformed_paths_are_rejected(text: str) -> None:
    """Anything outside the grammar is a ValueError naming the path."""
    with pytest.raises(ValueError, match="field path"):
        parse_path(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("id", "o-1"),
        ("customer.email", "a@example.com"),
        ("lines[0].sku", "A-1"),
        ("lines[1].quantity", 1),
        ("lines[*].sku", ["A-1", "B 2", None]),
        ("lines[*].quantity", [2, 1, 5]),
        ("note", None),
        ("customer", ORDER["customer"]),
    ],
)
def test_paths_resolve_against_record_data(text: str, value: Any) -> None:
    """Nested keys, indexes and [*] resolve; [*] keeps item order with None for gaps."""
    assert parse_path(text).resolve(ORDER) == value


@pytest.mark.parametrize(
    "text", ["missing", "customer.phone", "lines[9].sku", "id.deeper", "customer[0]", "id[*]"]
)
def test_absent_values_resolve_to_missing(text: str) -> None:
    """An absent key, an index out of range or a wrong shape is MISSING, not None."""
    assert parse_path(text).resolve(ORDER) is MISSING


def test_templates_fill_placeholders_url_quoted() -> None:
    """Each placeholder is a field path whose value is quoted with nothing kept safe."""
    assert render("/v1/customers/{customer.id}/limits", ORDER) == "/v1/customers/c%2F7/limits"
    assert render("/v1/stock/{lines[1].sku}", ORDER) == "/v1/stock/B%202"
    assert render("/v1/vip/{customer.vip}?x", ORDER) == "/v1/vip/true?x"
    assert render("/v1/static", ORDER) == "/v1/static"


def test_templates_are_compiled_once_into_parts() -> None:
    """A compiled template knows its literal parts and the paths it needs."""
    template = compile_template("/v1/{id}/lines/{lines[0].sku}")
    assert [p.text for p in template.paths] == ["id", "lines[0].sku"]
    assert template.render(lambda path: path.resolve(ORDER)) == "/v1/o-1/lines/A-1"


@pytest.mark.parametrize("text", ["/v1/{missing}", "/v1/{note}", "/v1/{lines[2].sku}"])
def test_a_missing_template_value_is_a_clear_error(text: str) -> None:
    """An absent or null placeholder value raises FieldMissingError naming the path."""
    with pytest.raises(FieldMissingError, match="has no value"):
        render(text, ORDER)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/v1/{sku", "unbalanced"),
        ("/v1/sku}", "unbalanced"),
        ("/v1/{}", "field path"),
        ("/v1/{a b}", "field path"),
        ("/v1/{lines[*].sku}", "one value"),
    ],
)
def test_malformed_templates_are_rejected(text: str, message: str) -> None:
    """Unbalanced braces, empty or bad placeholders and [*] are config-time errors."""
    with pytest.raises(ValueError, match=message):
        compile_template(text)


@pytest.mark.parametrize(
    "text",
    [
        "id",
        "customer.email",
        "billing.email",
        "lines[*].sku",
        "lines[0].quantity",
        "tags[*]",
        "attributes.anything.at.all",
    ],
)
def test_paths_that_can_exist_pass_the_schema_check(text: str) -> None:
    """$ref, Optional (anyOf), list items and open mappings are followed or accepted."""
    assert check_path(text, ORDER_SCHEMA) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("email", "no field 'email'"),
        ("customer.phone", "customer has no field 'phone'"),
        ("billing.phone", "billing has no field 'phone'"),
        ("lines[*].price", "lines[*] has no field 'price'"),
        ("id[*]", "id is not a list"),
        ("customer.id.x", "customer.id has no field 'x'"),
    ],
)
def test_paths_that_cannot_exist_are_reported(text: str, message: str) -> None:
    """A misspelt field, or a list segment on a scalar, gets a message naming where."""
    assert check_path(text, ORDER_SCHEMA) == message


def test_a_schema_without_property_information_accepts_any_path() -> None:
    """An empty schema, or one allowing additional properties, cannot rule a path out."""
    assert check_path("a.b[*].c", {}) is None
    open_ = {"type": "object", "properties": {"id": {}}, "additionalProperties": True}
    assert check_path("extra.x", open_) is None
    closed = {"type": "object", "properties": {"id": {}}, "additionalProperties": False}
    assert check_path("extra", closed) == "no field 'extra'"
