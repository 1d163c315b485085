"""Unit tests for the CloudEvents 1.0 envelope model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.envelope import (
    BINARY_HEADER_PREFIX,
    MAX_EXTENSIONS,
    REQUIRED_ATTRIBUTES,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
)

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "6f1c2b9e-0d1e-4a5b-9c8d-7e6f5a4b3c2d",
    "source": "/crm/eu-west",
    "type": "customer.v1",
}


def _errors(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        CloudEvent.model_validate(data)
    return [(error["loc"], error["type"]) for error in caught.value.errors()]


def test_binding_constants_follow_the_cloudevents_kafka_binding() -> None:
    """The structured content type, binary header prefix and required attributes are the spec's."""
    assert STRUCTURED_CONTENT_TYPE == "application/cloudevents+json"
    assert BINARY_HEADER_PREFIX == "ce_"
    assert set(REQUIRED_ATTRIBUTES) == {"id", "source", "specversion", "type"}


def test_minimal_event_is_valid_with_optional_attributes_absent() -> None:
    """An event with only the required attributes validates, the rest defaulting to None."""
    event = CloudEvent.model_validate(EVENT)
    assert (event.id, event.type, event.time, event.data, event.extensions) == (
        EVENT["id"],
        "customer.v1",
        None,
        None,
        {},
    )


def test_full_event_keeps_every_attribute_and_the_extensions() -> None:
    """Optional attributes are parsed and extension attributes are kept by name."""
    event = CloudEvent.model_validate(
        {
            **EVENT,
            "time": "2024-05-01T12:00:00+02:00",
            "datacontenttype": "application/json",
            "dataschema": "https://schemas.example.com/customer.v1.json",
            "subject": "customer/42",
            "data": {"company_name": "ACME"},
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "partitionkey": "42",
            "retries": 2,
            "replayed": False,
        }
    )
    assert event.time == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert event.data == {"company_name": "ACME"}
    assert event.extensions == {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "partitionkey": "42",
        "retries": 2,
        "replayed": False,
    }


@pytest.mark.parametrize("data", [None, 0, 1.5, "text", True, [1, "a"], {"nested": {"k": [None]}}])
def test_data_may_be_any_json_value(data: object) -> None:
    """The event's data is kept as given, whatever JSON value it is."""
    assert CloudEvent.model_validate({**EVENT, "data": data}).data == data


def test_event_is_frozen() -> None:
    """A validated event cannot be modified."""
    event = CloudEvent.model_validate(EVENT)
    with pytest.raises(ValidationError, match="frozen"):
        event.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("attribute", REQUIRED_ATTRIBUTES)
def test_missing_required_attribute_is_rejected(attribute: str) -> None:
    """Each required attribute missing is reported on that attribute."""
    data = {key: value for key, value in EVENT.items() if key != attribute}
    assert _errors(data) == [((attribute,), "missing")]


@pytest.mark.parametrize(
    ("overrides", "field", "error_type"),
    [
        ({"specversion": "0.3"}, "specversion", "literal_error"),
        ({"id": ""}, "id", "string_too_short"),
        ({"id": "   "}, "id", "blank_string"),
        ({"id": "x" * 257}, "id", "string_too_long"),
        ({"id": 42}, "id", "string_type"),
        ({"source": "/crm eu"}, "source", "uri_reference"),
        ({"source": "/crm\x00"}, "source", "uri_reference"),
        ({"source": "s" * 2049}, "source", "string_too_long"),
        ({"type": ".customer"}, "type", "string_pattern_mismatch"),
        ({"type": "customer v1"}, "type", "string_pattern_mismatch"),
        ({"type": "t" * 257}, "type", "string_too_long"),
        ({"time": "2024-05-01T12:00:00"}, "time", "timezone_aware"),
        ({"datacontenttype": "x" * 256}, "datacontenttype", "string_too_long"),
        ({"dataschema": ""}, "dataschema", "string_too_short"),
        ({"subject": "s" * 1025}, "subject", "string_too_long"),
    ],
)
def test_invalid_attribute_is_rejected_on_its_field(
    overrides: dict[str, Any], field: str, error_type: str
) -> None:
    """Each attribute rule rejects a bad value with one error naming the attribute."""
    assert _errors({**EVENT, **overrides}) == [((field,), error_type)]


@pytest.mark.parametrize(
    ("name", "value", "error_type"),
    [
        ("TraceParent", "x", "extension_name"),
        ("trace_parent", "x", "extension_name"),
        ("a" * 21, "x", "extension_name"),
        ("data_base64", "AAEC", "data_base64"),
        ("ratio", 0.5, "extension_value"),
        ("missing", None, "extension_value"),
        ("tags", ["a"], "extension_value"),
        ("big", 2**31, "extension_value"),
        ("long", "v" * 2049, "extension_value"),
    ],
)
def test_invalid_extension_attribute_is_rejected_by_name(
    name: str, value: object, error_type: str
) -> None:
    """An extension with a bad name or a non-string/int/bool value is reported under its name."""
    assert _errors({**EVENT, name: value}) == [((name,), error_type)]


@pytest.mark.parametrize(("name", "value"), [("a" * 20, "x"), ("n1", -(2**31)), ("ok", True)])
def test_extension_at_the_limits_is_accepted(name: str, value: object) -> None:
    """A 20-character name, the smallest 32-bit integer and a boolean are all valid extensions."""
    assert CloudEvent.model_validate({**EVENT, name: value}).extensions == {name: value}


def test_more_than_the_maximum_number_of_extensions_is_rejected() -> None:
    """An event may carry 32 extension attributes but not 33."""
    extensions = {f"ext{i}": "v" for i in range(MAX_EXTENSIONS)}
    assert len(CloudEvent.model_validate({**EVENT, **extensions}).extensions) == MAX_EXTENSIONS
    assert _errors({**EVENT, **extensions, "onemore": "v"}) == [((), "too_many_extensions")]
