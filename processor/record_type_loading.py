"""Loading the record types a deployment validates: config entries and installed packages.

The ``record_types`` config section maps a CloudEvent ``type`` to one of::

    order.v1: acme_orders.models:OrderV1                 # a pydantic v2 model class
    order.v1: {model: acme_orders.models:OrderV1}        # the same, spelled out
    order.v2: {json_schema: schemas/order.v2.json}       # relative to the config file

Installed packages register types in the entry-point group ``record_processor.record_types``
(name: the CloudEvent type, value: ``module:Class``), e.g. in their ``pyproject.toml``::

    [project.entry-points."record_processor.record_types"]
    "order.v1" = "acme_orders.models:OrderV1"

Entry-point types are discovered automatically: installing the package is the act that
enables them, and every ``--workers`` process and every subcommand sees the same installed
set with no config to keep in step. The config wins over an entry point of the same name
(to pin another model or a JSON Schema), and an entry point it overrides is never imported,
so a broken package can be shadowed. Two packages claiming one name are a config error
unless the config settles it.

Every problem is collected, then raised once as a :class:`~processor.errors.ConfigError`
with one line per problem naming its key, before anything connects.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel
from pydantic.errors import PydanticUserError

from processor.errors import ConfigError
from processor.jsonschema_types import JsonSchemaRecordType, SchemaFileError
from processor.record_types import TYPE_NAME, PydanticRecordType, RecordType, RecordTypes

#: The entry-point group installed packages register record types in.
ENTRY_POINT_GROUP: Final = "record_processor.record_types"
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class _Problem(Exception):
    """One thing wrong with one entry; the loader prefixes the key."""


def _describe(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__qualname__}"
    return f"a {type(obj).__name__}"


def import_object(path: str) -> object:
    """Import ``package.module:Name`` (``Name`` may be dotted). Raises ``_Problem``."""
    if not _IMPORT_PATH.match(path):
        raise _Problem(f"{path!r} is not an import path of the form 'package.module:ClassName'")
    module_name, _, attr_path = path.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise _Problem(f"cannot import {module_name!r} ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - user code may raise anything on import; say which key
        raise _Problem(f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise _Problem(f"{module_name!r} has no attribute {attr_path!r}") from None
    return obj


def _pydantic_type(name: str, path: str) -> PydanticRecordType:
    obj = import_object(path)
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)) or obj is BaseModel:
        raise _Problem(f"{path!r} is not a pydantic model class (it is {_describe(obj)})")
    try:
        return PydanticRecordType(name, obj, source=path)
    except PydanticUserError as exc:
        raise _Problem(f"{path!r} has no JSON Schema ({exc})") from None


def _schema_type(name: str, file: str, base_dir: Path) -> JsonSchemaRecordType:
    path = Path(file)
    try:
        return JsonSchemaRecordType.from_file(name, path if path.is_absolute() else base_dir / path)
    except SchemaFileError as exc:
        raise _Problem(str(exc)) from None


def _from_config(name: str, value: object, base_dir: Path) -> RecordType:
    if isinstance(value, str):
        return _pydantic_type(name, value)
    if not isinstance(value, Mapping):
        raise _Problem("expected an import path or a mapping with 'model' or 'json_schema'")
    keys = set(value)
    if len(keys) != 1 or not keys <= {"model", "json_schema"}:
        raise _Problem(f"expected exactly one of 'model' or 'json_schema', got {sorted(keys)}")
    (kind,) = keys
    target = value[kind]
    if not isinstance(target, str) or not target:
        raise _Problem(f"'{kind}' must be a non-empty string")
    if kind == "model":
        return _pydantic_type(name, target)
    return _schema_type(name, target, base_dir)


def _discovered() -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        same = found.setdefault(ep.name, [])
        if all(other.value != ep.value for other in same):
            same.append(ep)
    return found


def _entry_point_key(ep: EntryPoint) -> str:
    dist = f" in {ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
    return f"entry point {ENTRY_POINT_GROUP}:{ep.name}{dist}"


#: One problem: where (config key parts) and what.
Problem = tuple[tuple[str, ...], str]


def load_record_types(
    spec: Mapping[str, str | Mapping[str, Any]],
    *,
    base_dir: Path,
    discover: bool = True,
) -> RecordTypes:
    """Load the configured record types, plus installed packages' entry points.

    Args:
        spec: The ``record_types`` config section: type name to an import path, or to a
            mapping with ``model`` (an import path) or ``json_schema`` (a file path).
        base_dir: The config file's directory; relative schema paths start there.
        discover: Also load the ``record_processor.record_types`` entry points (the config
            overrides an entry point of the same name).

    Raises:
        ConfigError: Listing every problem, one line each, each naming its key.
    """
    loaded, problems = record_types_and_problems(spec, base_dir=base_dir, discover=discover)
    if problems:
        lines = [f"{'.'.join(where)}: {what}" for where, what in problems]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return loaded


def record_types_and_problems(
    spec: Mapping[str, str | Mapping[str, Any]],
    *,
    base_dir: Path,
    discover: bool = True,
) -> tuple[RecordTypes, list[Problem]]:
    """What :func:`load_record_types` loads, and every problem as ``(key parts, message)``
    instead of an exception (the config reports them with its other problems)."""
    problems: list[Problem] = []
    loaded: dict[str, RecordType] = {}
    if discover:
        for name, eps in sorted(_discovered().items()):
            if name in spec:
                continue
            key: tuple[str, ...] = (_entry_point_key(eps[0]),)
            if len(eps) > 1:
                claims = ", ".join(f"{ep.value!r}" for ep in eps)
                problems.append(
                    (("record_types", name), f"registered by more than one entry point "
                     f"({claims}); name it under record_types to choose")
                )  # fmt: skip
            elif not TYPE_NAME.match(name):
                problems.append((key, f"{name!r} is not a valid record type name"))
            else:
                try:
                    loaded[name] = _pydantic_type(name, eps[0].value)
                except _Problem as exc:
                    problems.append((key, str(exc)))
    for name, value in spec.items():
        key = ("record_types", name)
        if not TYPE_NAME.match(name):
            problems.append((key, f"not a valid record type name ({TYPE_NAME.pattern})"))
            continue
        try:
            loaded[name] = _from_config(name, value, base_dir)
        except _Problem as exc:
            problems.append((key, str(exc)))
    return RecordTypes(loaded), problems
