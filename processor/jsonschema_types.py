"""JSON Schema record types: a schema file validates a record, for teams that write no Python.

The validator is jsonschema-rs (Rust, maintained, typed), chosen by measurement with
``docs/bench/jsonschema_validators.py`` on an order-like schema (Python 3.11, this 2-core
machine), microseconds per record:

==================  =======  ==================  ===========================
validator           valid    invalid (yes/no)    invalid, every violation
==================  =======  ==================  ===========================
jsonschema-rs 0.60      4.1                 0.7          41.9 (5 of 5)
fastjsonschema 2.22    39.7                 7.1          cannot: first one only
jsonschema 4.26       589                  66           540 (5 of 5)
==================  =======  ==================  ===========================

A record is checked with ``is_valid`` first and its violations collected only when it fails,
so a valid record pays the 4 us. Formats are checked (``format: email`` is not a mere
annotation here, as in our pydantic types), an unknown format is a config error (a typo would
otherwise check nothing), and nothing is fetched: a ``$ref`` outside the file is a config
error. Draft 2020-12 (the default when ``$schema`` is absent) and Draft 7 are supported.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import jsonschema_rs

from processor.record_types import (
    MAX_VIOLATIONS,
    RecordType,
    SchemaViolation,
    ValidatedRecord,
    Violation,
    field_path,
)

#: ``$schema`` values accepted (with or without the trailing ``#``, http or https).
DRAFTS: Final = frozenset(
    {"json-schema.org/draft/2020-12/schema", "json-schema.org/draft-07/schema"}
)
#: A violation message quotes the offending value; a long value is cut to keep reasons small.
MAX_MESSAGE_CHARS: Final = 300


class SchemaFileError(ValueError):
    """A schema file cannot be used; the message says why, without the config key."""


def _check_draft(schema: dict[str, Any]) -> None:
    uri = schema.get("$schema")
    if uri is None:
        return
    if isinstance(uri, str):
        bare = uri.removeprefix("https://").removeprefix("http://").rstrip("#")
        if bare in DRAFTS:
            return
    raise SchemaFileError(f"unsupported $schema {uri!r} (use Draft 2020-12 or Draft 7)")


def _first_line(exc: Exception) -> str:
    return (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]


def compile_schema(schema: Any) -> jsonschema_rs.Validator:
    """Check ``schema`` against its draft's meta-schema and compile it, offline.

    Raises:
        SchemaFileError: The schema is not an object, names an unsupported draft, breaks its
            meta-schema, or cannot compile (bad regex, unknown format, unresolvable ``$ref``).
    """
    if not isinstance(schema, dict):
        raise SchemaFileError(f"a JSON Schema must be an object, not {type(schema).__name__}")
    _check_draft(schema)
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        where = "/".join(str(p) for p in exc.instance_path)
        raise SchemaFileError(f"invalid JSON Schema at '/{where}': {_first_line(exc)}") from None
    try:
        # validator_for picks the draft from $schema, Draft 2020-12 when there is none.
        return jsonschema_rs.validator_for(
            schema, validate_formats=True, ignore_unknown_formats=False, offline=True
        )
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError) as exc:
        raise SchemaFileError(f"invalid JSON Schema: {_first_line(exc)}") from None


def read_schema_file(path: Path) -> dict[str, Any]:
    """Read and parse one schema file (the checks are :func:`compile_schema`'s)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaFileError(f"schema file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaFileError(f"cannot read schema file {str(path)!r} ({exc})") from None
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaFileError(
            f"schema file {str(path)!r} is not valid JSON (line {exc.lineno}, "
            f"column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(loaded, dict):
        raise SchemaFileError(f"schema file {str(path)!r} must hold a JSON object")
    return loaded


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 1] + "…"


def _violations(error: jsonschema_rs.ValidationError) -> Iterator[Violation]:
    """One error as pydantic would put it: a missing or extra property is named in the path."""
    path = list(error.instance_path)
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        yield Violation(field_path([*path, kind.property]), "Field required")
    elif isinstance(
        kind,
        jsonschema_rs.ValidationErrorKind.AdditionalProperties
        | jsonschema_rs.ValidationErrorKind.UnevaluatedProperties,
    ):
        for name in kind.unexpected:
            yield Violation(field_path([*path, name]), "Extra inputs are not permitted")
    else:
        yield Violation(field_path(path), _bounded(error.message))


class JsonSchemaRecordType(RecordType):
    """A record type validated by a JSON Schema; data passes through as it came (no coercion)."""

    def __init__(self, name: str, schema: dict[str, Any], path: Path | None = None) -> None:
        self.name = name
        self.path = path
        self.source = str(path) if path is not None else "(inline JSON Schema)"
        self._schema = schema
        self._validator = compile_schema(schema)
        properties = self.resolved_json_schema().get("properties", {})
        self._field_names = frozenset(properties if isinstance(properties, dict) else ())

    @classmethod
    def from_file(cls, name: str, path: Path) -> JsonSchemaRecordType:
        """Load ``path``. Raises :class:`SchemaFileError` saying what is wrong with it."""
        return cls(name, read_schema_file(path), path)

    def validate(self, data: dict[str, Any]) -> ValidatedRecord:
        if self._validator.is_valid(data):
            return ValidatedRecord(data)
        violations: list[Violation] = []
        for error in self._validator.iter_errors(data):
            violations.extend(_violations(error))
            if len(violations) >= MAX_VIOLATIONS:
                break
        raise SchemaViolation(violations)

    def json_schema(self) -> dict[str, Any]:
        return copy.deepcopy(self._schema)

    @property
    def field_names(self) -> frozenset[str]:
        return self._field_names
