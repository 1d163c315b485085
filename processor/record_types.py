"""Record types: what validates a CloudEvent's ``data``, and the registry the pipeline reads.

A :class:`RecordType` turns an event's ``data`` into a :class:`ValidatedRecord` (the
normalised JSON-able dict, plus the model instance when there is one, for custom checks) or
raises :class:`SchemaViolation` with every violation as ``(field, message)``: ``field`` is the
dotted instance path (``lines.0.sku``), ``None`` for the record as a whole, the convention
the pipeline has always used for pydantic's errors. Two kinds exist: :class:`PydanticRecordType`
here and :class:`~processor.jsonschema_types.JsonSchemaRecordType`; both answer ``json_schema()``
with ``$defs`` kept, and ``resolved_json_schema()`` with every ``$ref`` inlined (the form field
path checks and schema comparison walk).

:class:`RecordTypes` is the loaded registry (name to type). It is built once by
:func:`processor.record_type_loading.load_record_types` and read by the pipeline, config
validation and the schema/outcome exports; nothing downstream keeps a table of its own.
"""

from __future__ import annotations

import copy
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import jsonschema_rs
from pydantic import BaseModel, ValidationError

from processor.errors import ProcessorError

#: Violations kept per record: enough to fix a record, bounded so a hostile one stays small.
MAX_VIOLATIONS: Final = 50
#: A CloudEvent ``type`` the processor accepts as a record type name.
TYPE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Violation(NamedTuple):
    """One schema violation: where (dotted path, ``None`` for the whole record) and what."""

    field: str | None
    message: str


def field_path(parts: Sequence[str | int]) -> str | None:
    """The dotted path of an instance location (``["lines", 0, "sku"]`` -> ``lines.0.sku``)."""
    return ".".join(str(p) for p in parts) or None


class SchemaViolation(ProcessorError):
    """The record's data does not match its type's schema. Carries every violation (capped)."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations: tuple[Violation, ...] = tuple(violations[:MAX_VIOLATIONS])
        first = self.violations[0] if self.violations else Violation(None, "invalid")
        super().__init__(f"{first.field or 'data'}: {first.message}")


@dataclass(frozen=True, slots=True)
class ValidatedRecord:
    """A record that passed its schema: normalised JSON-able data and, for models, the model."""

    data: dict[str, Any]
    model: BaseModel | None = None


class RecordType(ABC):
    """How one CloudEvent ``type`` is validated and described."""

    #: The CloudEvent ``type`` this validates, e.g. ``order.v1``.
    name: str
    #: Where it came from, for humans: ``acme.models:OrderV1`` or a schema file's path.
    source: str

    @abstractmethod
    def validate(self, data: dict[str, Any]) -> ValidatedRecord:
        """Validate ``data``; raise :class:`SchemaViolation` listing every violation."""

    @abstractmethod
    def json_schema(self) -> dict[str, Any]:
        """The type's JSON Schema, ``$defs`` kept so every local ``$ref`` resolves."""

    @property
    @abstractmethod
    def field_names(self) -> frozenset[str]:
        """Top-level property names (``validation.unknown_fields: keep`` sets the rest aside)."""

    def resolved_json_schema(self) -> dict[str, Any]:
        """The JSON Schema with every ``$ref`` inlined (a recursive one stays a ``$ref``)."""
        return jsonschema_rs.dereference(self.json_schema(), offline=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.source!r})"


class PydanticRecordType(RecordType):
    """A record type validated by a pydantic v2 model: it normalises as well as validates."""

    def __init__(self, name: str, model: type[BaseModel], *, source: str | None = None) -> None:
        self.name = name
        self.model = model
        self.source = source or f"{model.__module__}:{model.__qualname__}"
        # Generated once: it also proves at load time that the model has a JSON Schema.
        self._schema = model.model_json_schema()
        names = set(model.model_fields)
        names.update(f.alias for f in model.model_fields.values() if f.alias)
        self._field_names = frozenset(names)

    def validate(self, data: dict[str, Any]) -> ValidatedRecord:
        try:
            instance = self.model.model_validate(data)
        except ValidationError as exc:
            raise SchemaViolation(
                [
                    Violation(field_path(err["loc"]), err["msg"])
                    for err in exc.errors(include_url=False)[:MAX_VIOLATIONS]
                ]
            ) from None
        return ValidatedRecord(instance.model_dump(mode="json"), instance)

    def json_schema(self) -> dict[str, Any]:
        return copy.deepcopy(self._schema)

    @property
    def field_names(self) -> frozenset[str]:
        return self._field_names


class RecordTypes(Mapping[str, RecordType]):
    """The loaded registry: CloudEvent ``type`` name to its :class:`RecordType`. Immutable."""

    def __init__(self, types: Mapping[str, RecordType] | Sequence[RecordType] = ()) -> None:
        items = list(types.values() if isinstance(types, Mapping) else types)
        self._types: dict[str, RecordType] = {t.name: t for t in items}
        if len(self._types) != len(items):
            raise ValueError(f"record type names must be unique: {[t.name for t in items]}")

    def __getitem__(self, name: str) -> RecordType:
        return self._types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def names(self) -> list[str]:
        """Every type name, sorted (stable order for exports, metrics and messages)."""
        return sorted(self._types)

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """Each type's JSON Schema by name, in name order (the schema export's input)."""
        return {name: self._types[name].json_schema() for name in self.names()}

    def __repr__(self) -> str:
        return f"RecordTypes({self.names()})"
