"""Is a record type's new JSON Schema compatible with the old one? The rules, in one place.

:func:`compare` resolves every ``$ref`` in both schemas, walks them side by side (properties,
array items, ``anyOf``/``oneOf`` branches matched by type) and lists each difference as a
:class:`Change`. A change is *breaking* when records that were valid become invalid, or when a
consumer can no longer rely on what it read before:

- breaking: a property removed, a property newly required or no longer required (consumers
  may not find it), a type narrowed (``number`` to ``integer``, a type or ``anyOf`` branch
  removed), an ``enum`` value removed (``const`` is an enum of one), ``maxLength``/``maximum``/
  ``maxItems``/``maxProperties`` lowered or their ``min`` twins raised, ``multipleOf`` added
  or changed, ``additionalProperties: false`` added, a ``pattern`` or ``format`` added or
  changed, an unresolvable (recursive) ``$ref`` pointing elsewhere;
- compatible: a new optional property, a type widened, a constraint widened or dropped, an
  ``enum`` value added, a pattern or format dropped, ``title``/``description``/``default``/
  ``examples`` changed.

:func:`render_report` is the text ``processor schemas diff`` prints; the CLI exits 1 when any
change is breaking.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jsonschema_rs

#: Upper bounds: lowering one narrows; their lower-bound twins narrow when raised.
_UPPER: Final = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_LOWER: Final = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_ANNOTATIONS: Final = ("title", "description", "default", "examples", "deprecated")
_BRANCHES: Final = ("anyOf", "oneOf")


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two schemas, at an instance path such as ``lines[*].sku``."""

    path: str
    kind: str
    breaking: bool
    message: str


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _types(node: dict[str, Any]) -> list[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    return ["any"]


def _branches(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The node's alternatives keyed by type: ``anyOf``/``oneOf`` branches or ``type`` lists."""
    for keyword in _BRANCHES:
        alternatives = node.get(keyword)
        if isinstance(alternatives, list):
            found: dict[str, dict[str, Any]] = {}
            for i, branch in enumerate(alternatives):
                if isinstance(branch, dict):
                    for t in _types(branch):
                        found[t if t not in found else f"{t}#{i}"] = branch
            return found
    return dict.fromkeys(_types(node), node)


def _type_changes(path: str, old: set[str], new: set[str]) -> Iterator[Change]:
    where = path or "(root)"
    if old == new:
        return
    if "any" in new:
        yield Change(path, "type.widened", False, f"{where}: now accepts any type")
        return
    if "any" in old:
        yield Change(path, "type.narrowed", True, f"{where}: now limited to {sorted(new)}")
        return
    for t in sorted(old - new):
        if t == "integer" and "number" in new:
            yield Change(path, "type.widened", False, f"{where}: integer widened to number")
        elif t == "number" and "integer" in new:
            yield Change(path, "type.narrowed", True, f"{where}: number narrowed to integer")
        else:
            yield Change(path, "type.narrowed", True, f"{where}: no longer accepts {t}")
    for t in sorted(new - old):
        twin = {"number": "integer", "integer": "number"}.get(t)
        if twin not in old:  # integer <-> number was reported above
            yield Change(path, "type.widened", False, f"{where}: now also accepts {t}")


def _bounds(path: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    where = path or "(root)"
    for keyword in (*_UPPER, *_LOWER):
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        upper = keyword in _UPPER
        if after is None:
            tighter = False
        elif before is None:
            tighter = True
        else:
            tighter = after < before if upper else after > before
        kind = "constraint.tightened" if tighter else "constraint.relaxed"
        yield Change(path, kind, tighter, f"{where}: {keyword} {before} -> {after}")
    if old.get("multipleOf") != new.get("multipleOf") and new.get("multipleOf") is not None:
        yield Change(
            path,
            "constraint.tightened",
            True,
            f"{where}: multipleOf {old.get('multipleOf')} -> {new['multipleOf']}",
        )


def _allowed(node: dict[str, Any]) -> list[Any] | None:
    """The values ``enum`` or ``const`` (an enum of one, as pydantic writes a one-value Literal)."""
    if isinstance(node.get("enum"), list):
        return list(node["enum"])
    return [node["const"]] if "const" in node else None


def _keywords(path: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    where = path or "(root)"
    for keyword in ("pattern", "format"):
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        if after is None:
            yield Change(
                path, f"{keyword}.removed", False, f"{where}: {keyword} {before!r} dropped"
            )
        elif before is None:
            yield Change(path, f"{keyword}.added", True, f"{where}: {keyword} {after!r} added")
        else:
            message = f"{where}: {keyword} {before!r} -> {after!r}"
            yield Change(path, f"{keyword}.changed", True, message)
    before_values, after_values = _allowed(old), _allowed(new)
    if after_values is not None and before_values is None:
        yield Change(path, "enum.added", True, f"{where}: now limited to {after_values}")
    elif after_values is not None and before_values is not None:
        for value in (v for v in before_values if v not in after_values):
            yield Change(path, "enum.value_removed", True, f"{where}: {value!r} removed")
        for value in (v for v in after_values if v not in before_values):
            yield Change(path, "enum.value_added", False, f"{where}: {value!r} added")
    elif before_values is not None:
        yield Change(path, "enum.removed", False, f"{where}: no longer limited to values")
    if old.get("$ref") != new.get("$ref") and "$ref" in new:
        yield Change(path, "ref.changed", True, f"{where}: refers to {new['$ref']!r} now")


def _objects(path: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    old_props: dict[str, Any] = old.get("properties") or {}
    new_props: dict[str, Any] = new.get("properties") or {}
    old_required = set(old.get("required") or ())
    new_required = set(new.get("required") or ())
    for name in sorted(old_props.keys() - new_props.keys()):
        at = _join(path, name)
        yield Change(at, "property.removed", True, f"{at}: property removed")
    for name in sorted(new_props.keys() - old_props.keys()):
        at = _join(path, name)
        if name in new_required:
            yield Change(at, "property.added_required", True, f"{at}: new required property")
        else:
            yield Change(at, "property.added", False, f"{at}: new optional property")
    for name in sorted(old_props.keys() & new_props.keys()):
        at = _join(path, name)
        if name in new_required and name not in old_required:
            yield Change(at, "required.added", True, f"{at}: now required")
        elif name in old_required and name not in new_required:
            yield Change(at, "required.removed", True, f"{at}: no longer required")
        yield from _node(at, old_props[name], new_props[name])
    if new.get("additionalProperties") is False and old.get("additionalProperties") is not False:
        where = path or "(root)"
        yield Change(path, "additional_properties.closed", True, f"{where}: no extra properties")
    elif old.get("additionalProperties") is False and new.get("additionalProperties") is not False:
        where = path or "(root)"
        yield Change(path, "additional_properties.opened", False, f"{where}: extras allowed")


def _node(path: str, old: Any, new: Any) -> Iterator[Change]:
    if not isinstance(old, dict) or not isinstance(new, dict):
        if old != new:
            yield Change(path, "schema.changed", True, f"{path or '(root)'}: schema replaced")
        return
    old_branches, new_branches = _branches(old), _branches(new)
    yield from _type_changes(
        path,
        {k.partition("#")[0] for k in old_branches},
        {k.partition("#")[0] for k in new_branches},
    )
    # Annotations sit on the node, beside anyOf when there is one (pydantic's Optional).
    yield from _annotations(path, old, new)
    for key in sorted(old_branches.keys() & new_branches.keys()):
        before, after = old_branches[key], new_branches[key]
        yield from _bounds(path, before, after)
        yield from _keywords(path, before, after)
        if key.startswith("object"):
            yield from _objects(path, before, after)
        elif key.startswith("array") and ("items" in before or "items" in after):
            yield from _node(f"{path}[*]", before.get("items", {}), after.get("items", {}))


def _annotations(path: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    for keyword in _ANNOTATIONS:
        if old.get(keyword) != new.get(keyword):
            message = f"{path or '(root)'}: {keyword} changed"
            yield Change(path, "annotation.changed", False, message)


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every difference from ``old`` to ``new`` that matters to producers or consumers.

    Both schemas are dereferenced first (``$defs``/``definitions``); a recursive ``$ref``
    stays a reference and is compared as one. Breaking changes come first. Nothing is
    fetched: a ``$ref`` outside the schema is an error.

    Raises:
        ValueError: A ``$ref`` in either schema does not resolve within it.
    """
    try:
        resolved = (
            jsonschema_rs.dereference(old, offline=True),
            jsonschema_rs.dereference(new, offline=True),
        )
    except (jsonschema_rs.ReferencingError, ValueError) as exc:
        raise ValueError(f"cannot resolve a $ref: {exc}") from None
    found = _node("", *resolved)
    # A ``type`` list yields one branch per type, all the same node: report each change once.
    return sorted(dict.fromkeys(found), key=lambda c: not c.breaking)


def render_report(changes: Sequence[Change]) -> str:
    """The human report: a summary line, then one line per change, breaking ones first."""
    breaking = [c for c in changes if c.breaking]
    if not changes:
        return "compatible: no changes\n"
    head = (
        f"BREAKING: {len(breaking)} breaking change(s), {len(changes) - len(breaking)} compatible"
        if breaking
        else f"compatible: {len(changes)} compatible change(s)"
    )
    lines = [head]
    for change in sorted(changes, key=lambda c: not c.breaking):
        mark = "breaking  " if change.breaking else "compatible"
        lines.append(f"  {mark}  {change.kind:<30} {change.message}")
    return "\n".join(lines) + "\n"
