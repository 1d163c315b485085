"""Tests of record types: pydantic and JSON Schema validation, the registry, and loading."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from processor.errors import ConfigError
from processor.jsonschema_types import JsonSchemaRecordType, SchemaFileError, compile_schema
from processor.record_type_loading import ENTRY_POINT_GROUP, load_record_types
from processor.record_types import (
    MAX_VIOLATIONS,
    PydanticRecordType,
    RecordTypes,
    SchemaViolation,
    Violation,
)

MODELS = """
from pydantic import BaseModel, Field

class Line(BaseModel):
    sku: str = Field(pattern=r"^[A-Z0-9-]{3,40}$")
    quantity: int = Field(ge=1)

class OrderV1(BaseModel):
    order_id: str
    customer_email: str = Field(alias="email")
    lines: list[Line] = Field(max_length=100)

class Outer:
    class Inner(BaseModel):
        x: int

def not_a_model() -> None:
    pass
"""

ORDER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["order_id", "customer_email", "lines"],
    "properties": {
        "order_id": {"type": "string", "pattern": "^ord_[A-Za-z0-9]{4,}$"},
        "customer_email": {"type": "string", "format": "email"},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
    },
    "$defs": {
        "Line": {
            "type": "object",
            "required": ["sku", "quantity"],
            "properties": {
                "sku": {"type": "string"},
                "quantity": {"type": "integer", "minimum": 1},
            },
        }
    },
}
VALID_ORDER = {
    "order_id": "ord_1234",
    "customer_email": "ada@example.com",
    "lines": [{"sku": "SKU-1", "quantity": 2}],
}


class Line(BaseModel):
    sku: str = Field(pattern=r"^[A-Z0-9-]{3,40}$")
    quantity: int = Field(ge=1)


class Order(BaseModel):
    order_id: str
    lines: list[Line]


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package ``fake_shop`` on sys.path (models, a plain class, a module that raises)."""
    package = tmp_path / "site" / "fake_shop"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(MODELS)
    (package / "plain.py").write_text("class Order:\n    pass\n")
    (package / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield tmp_path / "site"
    for name in [m for m in sys.modules if m == "fake_shop" or m.startswith("fake_shop.")]:
        del sys.modules[name]


def _write_schema(path: Path, schema: object) -> Path:
    path.write_text(json.dumps(schema))
    return path


def _register(site: Path, dist: str, entries: dict[str, str]) -> None:
    """Install entry points the way pip does: a dist-info directory with entry_points.txt."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")


def _problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [line.strip() for line in str(exc.value).splitlines()[1:]]


# --- pydantic record types -------------------------------------------------------------------


def test_pydantic_type_returns_normalised_data_and_the_model() -> None:
    """A valid record comes back as JSON-able data with the model instance beside it."""
    rtype = PydanticRecordType("order.v1", Order)
    validated = rtype.validate({"order_id": "o1", "lines": [{"sku": "ABC", "quantity": "2"}]})
    assert validated.data == {"order_id": "o1", "lines": [{"sku": "ABC", "quantity": 2}]}
    assert isinstance(validated.model, Order)


def test_pydantic_violations_use_dotted_paths_like_the_pipeline() -> None:
    """Every violation is reported with a dotted path (``lines.0.sku``), missing ones too."""
    rtype = PydanticRecordType("order.v1", Order)
    with pytest.raises(SchemaViolation) as exc:
        rtype.validate({"lines": [{"sku": "a", "quantity": 0}]})
    assert [v.field for v in exc.value.violations] == [
        "order_id",
        "lines.0.sku",
        "lines.0.quantity",
    ]
    assert exc.value.violations[0] == Violation("order_id", "Field required")


def test_violations_are_capped() -> None:
    """A record with hundreds of violations reports at most MAX_VIOLATIONS of them."""
    rtype = PydanticRecordType("order.v1", Order)
    lines = [{"sku": "a", "quantity": 0}] * 200
    with pytest.raises(SchemaViolation) as exc:
        rtype.validate({"order_id": "o", "lines": lines})
    assert len(exc.value.violations) == MAX_VIOLATIONS


def test_pydantic_schema_keeps_defs_and_resolves() -> None:
    """json_schema() keeps $defs for $ref; resolved_json_schema() inlines them."""
    rtype = PydanticRecordType("order.v1", Order)
    assert rtype.json_schema()["properties"]["lines"]["items"] == {"$ref": "#/$defs/Line"}
    assert "Line" in rtype.json_schema()["$defs"]
    items = rtype.resolved_json_schema()["properties"]["lines"]["items"]
    assert items["properties"]["sku"]["pattern"] == "^[A-Z0-9-]{3,40}$"
    assert rtype.field_names == {"order_id", "lines"}


# --- JSON Schema record types ----------------------------------------------------------------


def test_json_schema_type_passes_a_valid_record_through() -> None:
    """A valid record's data is returned as it came, with no model."""
    rtype = JsonSchemaRecordType("order.v1", ORDER_SCHEMA)
    validated = rtype.validate(dict(VALID_ORDER))
    assert validated.data == VALID_ORDER
    assert validated.model is None
    assert rtype.field_names == {"order_id", "customer_email", "lines"}


def test_json_schema_violations_have_the_pydantic_shape() -> None:
    """Every violation is reported; missing and extra properties are named in the path."""
    rtype = JsonSchemaRecordType("order.v1", ORDER_SCHEMA)
    record = {
        "order_id": "bad",
        "customer_email": "not-an-email",
        "lines": [{"sku": "S", "quantity": 0}, {"quantity": 1}],
        "extra": 1,
    }
    with pytest.raises(SchemaViolation) as exc:
        rtype.validate(record)
    by_field = {v.field: v.message for v in exc.value.violations}
    assert set(by_field) == {
        "order_id",
        "customer_email",
        "lines.0.quantity",
        "lines.1.sku",
        "extra",
    }
    assert by_field["lines.1.sku"] == "Field required"
    assert by_field["extra"] == "Extra inputs are not permitted"
    assert "email" in by_field["customer_email"]


def test_a_root_level_violation_has_no_field() -> None:
    """A violation of the record as a whole has field None."""
    rtype = JsonSchemaRecordType("t", {"type": "object", "minProperties": 2})
    with pytest.raises(SchemaViolation) as exc:
        rtype.validate({"a": 1})
    assert [v.field for v in exc.value.violations] == [None]


def test_long_values_are_cut_in_messages() -> None:
    """A violation message quoting a huge value stays bounded."""
    rtype = JsonSchemaRecordType("t", {"properties": {"a": {"type": "string", "maxLength": 3}}})
    with pytest.raises(SchemaViolation) as exc:
        rtype.validate({"a": "x" * 10_000})
    assert len(exc.value.violations[0].message) <= 300


def test_draft_7_schemas_are_supported() -> None:
    """A Draft 7 schema with definitions validates with its own draft's rules."""
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"Qty": {"type": "integer", "minimum": 1}},
        "properties": {"q": {"$ref": "#/definitions/Qty"}},
    }
    rtype = JsonSchemaRecordType("t", schema)
    rtype.validate({"q": 1})
    with pytest.raises(SchemaViolation) as exc:
        rtype.validate({"q": 0})
    assert exc.value.violations[0].field == "q"
    assert rtype.resolved_json_schema()["properties"]["q"]["minimum"] == 1


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ([], "must be an object"),
        ({"$schema": "http://json-schema.org/draft-04/schema#"}, "unsupported $schema"),
        ({"type": "strnig"}, "invalid JSON Schema at '/type'"),
        ({"properties": {"a": {"pattern": "("}}}, "regex"),
        ({"properties": {"a": {"format": "emial"}}}, "Unknown format"),
        ({"properties": {"a": {"$ref": "#/$defs/Nope"}}}, "invalid JSON Schema"),
        ({"properties": {"a": {"$ref": "https://example.com/x.json"}}}, "Retrieval is disabled"),
    ],
)
def test_invalid_schemas_are_refused_at_load(schema: object, expected: str) -> None:
    """A schema that is not one, an unknown draft, a bad regex or ref fails at load time."""
    with pytest.raises(SchemaFileError) as exc:
        compile_schema(schema)
    assert expected in str(exc.value)


# --- registry --------------------------------------------------------------------------------


def test_registry_is_a_sorted_read_only_mapping() -> None:
    """RecordTypes maps names to types and lists names sorted."""
    types = RecordTypes(
        [PydanticRecordType("z.v1", Order), JsonSchemaRecordType("a.v1", ORDER_SCHEMA)]
    )
    assert types.names() == ["a.v1", "z.v1"]
    assert types["z.v1"].name == "z.v1"
    assert "missing" not in types
    assert list(types.json_schemas()) == ["a.v1", "z.v1"]


def test_registry_refuses_two_types_of_one_name() -> None:
    """Two record types with one name cannot both be in the registry."""
    with pytest.raises(ValueError, match="unique"):
        RecordTypes([PydanticRecordType("o.v1", Order), PydanticRecordType("o.v1", Line)])


def test_json_schema_is_a_copy_callers_cannot_corrupt() -> None:
    """Changing a returned schema does not change the type's own."""
    for rtype in (PydanticRecordType("o.v1", Order), JsonSchemaRecordType("o.v2", ORDER_SCHEMA)):
        rtype.json_schema()["$defs"]["Line"]["properties"].clear()
        assert rtype.json_schema()["$defs"]["Line"]["properties"]


# --- loading from config ---------------------------------------------------------------------


def test_loads_import_paths_and_schema_files_relative_to_the_config(
    acme: Path, tmp_path: Path
) -> None:
    """Both spellings of a model and a relative schema path load into one registry."""
    _write_schema(tmp_path / "order.v3.json", ORDER_SCHEMA)
    types = load_record_types(
        {
            "order.v1": "fake_shop.models:OrderV1",
            "order.v2": {"model": "fake_shop.models:Outer.Inner"},
            "order.v3": {"json_schema": "order.v3.json"},
        },
        base_dir=tmp_path,
        discover=False,
    )
    assert types.names() == ["order.v1", "order.v2", "order.v3"]
    assert isinstance(types["order.v1"], PydanticRecordType)
    assert types["order.v1"].source == "fake_shop.models:OrderV1"
    assert "email" in types["order.v1"].field_names  # the alias is what records carry
    assert isinstance(types["order.v3"], JsonSchemaRecordType)


def test_every_bad_entry_is_reported_at_once_with_its_key(acme: Path, tmp_path: Path) -> None:
    """One ConfigError lists every problem, one line each, naming the key."""
    (tmp_path / "bad.json").write_text("{not json")
    _write_schema(tmp_path / "invalid.json", {"type": 5})
    with pytest.raises(ConfigError) as exc:
        load_record_types(
            {
                "a.v1": "acme.models:OrderV1",
                "b.v1": "fake_shop.models:Foo",
                "c.v1": "fake_shop.models:not_a_model",
                "d.v1": {"json_schema": "missing.json"},
                "e.v1": {"json_schema": "bad.json"},
                "f.v1": {"json_schema": "invalid.json"},
                "g.v1": "fake_shop.broken:X",
                "h.v1": "no colon",
                "i.v1": {"model": "x:Y", "json_schema": "y.json"},
                "bad name!": "fake_shop.models:OrderV1",
            },
            base_dir=tmp_path,
            discover=False,
        )
    assert str(exc.value).startswith("invalid configuration:\n")
    problems = _problems(exc)
    assert len(problems) == 10
    missing = tmp_path / "missing.json"
    assert problems[:7] == [
        "record_types.a.v1: cannot import 'acme.models' (No module named 'acme')",
        "record_types.b.v1: 'fake_shop.models' has no attribute 'Foo'",
        "record_types.c.v1: 'fake_shop.models:not_a_model' is not a pydantic model class"
        " (it is a function)",
        f"record_types.d.v1: schema file '{missing}' does not exist",
        f"record_types.e.v1: schema file '{tmp_path / 'bad.json'}' is not valid JSON"
        " (line 1, column 2: Expecting property name enclosed in double quotes)",
        "record_types.f.v1: invalid JSON Schema at '/type': 5 is not valid under any of the"
        " schemas listed in the 'anyOf' keyword",
        "record_types.g.v1: importing 'fake_shop.broken' raised RuntimeError: boom at import",
    ]
    assert problems[7].startswith("record_types.h.v1: 'no colon' is not an import path")
    assert problems[8].startswith("record_types.i.v1: expected exactly one of")
    assert problems[9].startswith("record_types.bad name!: not a valid record type name")


def test_a_plain_class_is_not_a_model(acme: Path) -> None:
    """A class that is not a pydantic v2 model is refused, saying what it is."""
    with pytest.raises(ConfigError) as exc:
        load_record_types({"o.v1": "fake_shop.plain:Order"}, base_dir=acme, discover=False)
    assert _problems(exc) == [
        "record_types.o.v1: 'fake_shop.plain:Order' is not a pydantic model class"
        " (it is the class Order)"
    ]


# --- entry points ----------------------------------------------------------------------------


def test_entry_point_types_are_discovered(acme: Path) -> None:
    """An installed package's entry point registers its type without any config."""
    _register(acme, "fake_shop", {"order.v1": "fake_shop.models:OrderV1"})
    types = load_record_types({}, base_dir=acme)
    assert "order.v1" in types.names()
    assert types["order.v1"].source == "fake_shop.models:OrderV1"


def test_discovery_can_be_turned_off(acme: Path) -> None:
    """With discover=False only the config's types load."""
    _register(acme, "fake_shop", {"order.v1": "fake_shop.models:OrderV1"})
    assert "order.v1" not in load_record_types({}, base_dir=acme, discover=False)


def test_the_config_overrides_an_entry_point_and_never_imports_it(
    acme: Path, tmp_path: Path
) -> None:
    """A config entry wins over an entry point of the same name, even a broken one."""
    _register(acme, "fake_shop", {"order.v1": "fake_shop.broken:OrderV1"})
    _write_schema(tmp_path / "o.json", ORDER_SCHEMA)
    types = load_record_types({"order.v1": {"json_schema": "o.json"}}, base_dir=tmp_path)
    assert isinstance(types["order.v1"], JsonSchemaRecordType)


def test_a_broken_entry_point_is_a_config_error_naming_the_package(acme: Path) -> None:
    """An entry point that does not import is reported with its group, name and package."""
    _register(acme, "fake_shop", {"order.v1": "fake_shop.broken:OrderV1"})
    with pytest.raises(ConfigError) as exc:
        load_record_types({}, base_dir=acme)
    assert _problems(exc) == [
        f"entry point {ENTRY_POINT_GROUP}:order.v1 in fake_shop 1.0: importing"
        " 'fake_shop.broken' raised RuntimeError: boom at import"
    ]


def test_two_packages_claiming_one_name_must_be_settled_by_config(acme: Path) -> None:
    """Two entry points with one name are an error unless the config names the type."""
    _register(acme, "fake_shop", {"order.v1": "fake_shop.models:OrderV1"})
    _register(acme, "other_orders", {"order.v1": "fake_shop.models:Outer.Inner"})
    with pytest.raises(ConfigError) as exc:
        load_record_types({}, base_dir=acme)
    assert "registered by more than one entry point" in str(exc.value)
    settled = load_record_types({"order.v1": "fake_shop.models:OrderV1"}, base_dir=acme)
    assert settled["order.v1"].source == "fake_shop.models:OrderV1"


def test_the_fake_dist_info_is_real_metadata(acme: Path) -> None:
    """importlib.metadata itself sees the test's entry point (the rig is not vacuous)."""
    from importlib.metadata import entry_points

    assert "order.v1" not in [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    _register(acme, "fake_shop", {"order.v1": "fake_shop.models:OrderV1"})
    assert "order.v1" in [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
