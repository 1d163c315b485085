"""Bounds on check evidence: what an outcome document may carry from an upstream's answer.

Evidence is kept for people reading outcomes, so it is bounded, whatever an upstream or a
custom check returns: strings to :data:`MAX_EVIDENCE_CHARS`, mappings to
:data:`MAX_EVIDENCE_KEYS` keys, lists to :data:`MAX_EVIDENCE_ITEMS` items, nesting to
:data:`MAX_EVIDENCE_DEPTH` levels; anything that is not JSON becomes its ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_EVIDENCE_CHARS = 256
MAX_EVIDENCE_KEYS = 32
MAX_EVIDENCE_ITEMS = 100
MAX_EVIDENCE_DEPTH = 4


def bounded(value: Any, depth: int = 0) -> Any:
    """``value`` cut to the evidence bounds (a new object; the input is not changed)."""
    if isinstance(value, str):
        if len(value) > MAX_EVIDENCE_CHARS:
            return value[:MAX_EVIDENCE_CHARS] + "..."
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= MAX_EVIDENCE_DEPTH:
        return bounded(repr(value), depth)
    if isinstance(value, Mapping):
        items = list(value.items())[:MAX_EVIDENCE_KEYS]
        return {str(k)[:MAX_EVIDENCE_CHARS]: bounded(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple):
        return [bounded(v, depth + 1) for v in value[:MAX_EVIDENCE_ITEMS]]
    return bounded(repr(value), depth)


def bounded_mapping(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A mapping of evidence, bounded; None stays None."""
    if value is None:
        return None
    out = bounded(value)
    assert isinstance(out, dict)
    return out
