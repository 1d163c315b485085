"""Field paths and path templates: how checks name values in records and in answers.

Grammar (parsed once, at config time, into a :class:`FieldPath`)::

    path    := name ( "." name | "[" index "]" | "[*]" )*
    name    := [A-Za-z_][A-Za-z0-9_]*
    index   := [0-9]+

``email``, ``customer.email``, ``lines[0].sku``, ``lines[*].sku`` (every item: a list).
:meth:`FieldPath.resolve` returns :data:`MISSING` when the value is absent; under ``[*]`` an
item without the rest of the path contributes ``None`` so the list keeps the items' order.

A template is a request path with field paths in braces, ``/v1/stock/{sku}`` or
``/v1/customers/{customer.id}/limits``; each value is URL-quoted with nothing kept safe,
so a value cannot add path segments. A template value that is absent at run time raises
:class:`~processor.errors.FieldMissingError`: the record type should make the field
required, or the check should use ``when_present``.

:func:`check_path` checks a path against a record type's JSON Schema (pydantic's
``model_json_schema()`` or a JSON Schema file) so a misspelt field is a config error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

from processor.errors import FieldMissingError


class _Missing:
    """The type of :data:`MISSING`."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: What :meth:`FieldPath.resolve` returns for an absent value (distinct from ``None``).
MISSING: Final = _Missing()

EACH: Final = "*"
_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+|\*)\]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
MAX_PATH_CHARS = 256

Segment = str | int  # a key, an index, or EACH


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A parsed field path: keys (``str``), indexes (``int``) and :data:`EACH`."""

    text: str
    segments: tuple[Segment, ...]

    def __str__(self) -> str:
        return self.text

    @property
    def fans_out(self) -> bool:
        """Whether the path has a ``[*]`` (it resolves to a list)."""
        return EACH in self.segments

    @property
    def head(self) -> str:
        """The first key (``item`` for an item-relative path in a fan-out)."""
        first = self.segments[0]
        assert isinstance(first, str)
        return first

    def tail(self) -> tuple[Segment, ...]:
        """The segments after the first key."""
        return self.segments[1:]

    def resolve(self, data: Any) -> Any:
        """The value at this path in ``data``, or :data:`MISSING`."""
        return _walk(data, self.segments)


def _walk(value: Any, segments: tuple[Segment, ...]) -> Any:
    for position, seg in enumerate(segments):
        if seg == EACH:
            if not isinstance(value, list | tuple):
                return MISSING
            rest = segments[position + 1 :]
            found = (_walk(item, rest) for item in value)
            return [None if v is MISSING else v for v in found]
        if isinstance(seg, int):
            if not isinstance(value, list | tuple) or seg >= len(value):
                return MISSING
            value = value[seg]
        elif isinstance(value, Mapping) and seg in value:
            value = value[seg]
        else:
            return MISSING
    return value


def walk(value: Any, segments: tuple[Segment, ...]) -> Any:
    """Resolve raw segments (e.g. a path's :meth:`~FieldPath.tail`) against ``value``."""
    return _walk(value, segments)


def parse_path(text: str) -> FieldPath:
    """Parse a field path.

    Raises:
        ValueError: The text is not a field path (the message says where).
    """
    if not text or len(text) > MAX_PATH_CHARS:
        raise ValueError(f"field path {text!r}: must be 1 to {MAX_PATH_CHARS} characters")
    if not _NAME.match(text):
        raise ValueError(f"field path {text!r}: must start with a field name")
    segments: list[Segment] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or (match.group(1) and position and text[position] != "."):
            raise ValueError(f"field path {text!r}: unexpected {text[position:]!r}")
        name, index = match.groups()
        if name is not None:
            segments.append(name)
        else:
            segments.append(EACH if index == EACH else int(index))
        position = match.end()
    return FieldPath(text, tuple(segments))


@dataclass(frozen=True, slots=True)
class Template:
    """A request path with ``{field.path}`` placeholders, compiled."""

    text: str
    parts: tuple[str | FieldPath, ...]

    @property
    def paths(self) -> tuple[FieldPath, ...]:
        return tuple(p for p in self.parts if isinstance(p, FieldPath))

    def render(self, lookup: Callable[[FieldPath], Any]) -> str:
        """Fill the placeholders with ``lookup(path)``, URL-quoted.

        Raises:
            FieldMissingError: A placeholder's value is absent or null.
        """
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = lookup(part)
            if value is MISSING or value is None:
                raise FieldMissingError(
                    f"path template {self.text!r}: {part.text} has no value (make the field "
                    "required in the record type, or use when_present)"
                )
            out.append(quote(_text(value), safe=""))
        return "".join(out)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def query_text(value: Any) -> str:
    """A scalar as a query-parameter value (booleans as ``true``/``false``)."""
    return _text(value)


def compile_template(text: str) -> Template:
    """Compile a path template.

    Raises:
        ValueError: An unbalanced brace, an empty placeholder, a bad path, or a ``[*]``.
    """
    parts: list[str | FieldPath] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        literal = text[position : match.start()]
        if "{" in literal or "}" in literal:
            raise ValueError(f"path template {text!r}: unbalanced braces")
        parts.append(literal)
        path = parse_path(match.group(1).strip())
        if path.fans_out:
            raise ValueError(f"path template {text!r}: {path.text} must name one value, not [*]")
        parts.append(path)
        position = match.end()
    rest = text[position:]
    if "{" in rest or "}" in rest:
        raise ValueError(f"path template {text!r}: unbalanced braces")
    parts.append(rest)
    return Template(text, tuple(p for p in parts if p != ""))


def render(template: str | Template, values: Any) -> str:
    """Render a template against one mapping of values (a record's data)."""
    compiled = compile_template(template) if isinstance(template, str) else template
    return compiled.render(lambda path: path.resolve(values))


def check_path(path: FieldPath | str, schema: Mapping[str, Any]) -> str | None:
    """Why ``path`` cannot exist in records described by ``schema``, or None if it can.

    Follows ``$ref`` into ``$defs``, every branch of ``anyOf``/``oneOf``/``allOf`` (Optional
    fields), ``items`` for list segments and ``properties`` for keys. A schema that says
    nothing about its properties, or allows additional ones explicitly
    (``additionalProperties: true`` or a schema), accepts any key; one that lists
    ``properties`` without saying is taken as closed (a path to an unlisted key is a typo).
    """
    parsed = parse_path(path) if isinstance(path, str) else path
    defs = schema.get("$defs", {})
    nodes: list[Mapping[str, Any]] = [schema]
    walked = ""
    for seg in parsed.segments:
        found: list[Mapping[str, Any]] = []
        for node in _expand(nodes, defs):
            child = _child(node, seg)
            if child is True:
                return None
            if child is not None:
                found.append(child)
        if not found:
            if _is_key(seg):
                return f"{walked} has no field {seg!r}" if walked else f"no field {seg!r}"
            return f"{walked} is not a list"
        nodes = found
        walked = (f"{walked}.{seg}" if walked else str(seg)) if _is_key(seg) else f"{walked}[{seg}]"
    return None


def _is_key(seg: Segment) -> bool:
    return isinstance(seg, str) and seg != EACH


def _expand(nodes: list[Mapping[str, Any]], defs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    pending = list(nodes)
    while pending:
        node = pending.pop()
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = defs.get(ref.removeprefix("#/$defs/"))
            if isinstance(target, Mapping):
                pending.append(target)
            continue
        branches = [b for k in ("anyOf", "oneOf", "allOf") for b in node.get(k, ())]
        if branches:
            pending.extend(b for b in branches if isinstance(b, Mapping))
            continue
        out.append(node)
    return out


def _types(node: Mapping[str, Any]) -> set[str] | None:
    kind = node.get("type")
    if kind is None:
        return None
    return {kind} if isinstance(kind, str) else {k for k in kind if isinstance(k, str)}


def _child(node: Mapping[str, Any], seg: Segment) -> Mapping[str, Any] | Literal[True] | None:
    """The schema of ``seg`` under ``node``; True: anything goes; None: cannot exist."""
    types = _types(node)
    if not _is_key(seg):
        if "items" in node:
            items = node["items"]
            return items if isinstance(items, Mapping) and items else True
        if types is None:
            return None if node.get("properties") else True
        return True if "array" in types else None
    props = node.get("properties")
    if isinstance(props, Mapping) and seg in props:
        child = props[seg]
        return child if isinstance(child, Mapping) and child else True
    if types is not None and "object" not in types:
        return None
    extra = node.get("additionalProperties")  # absent: closed when properties are listed
    if props is None or extra is True or isinstance(extra, Mapping):
        return True
    return None
