"""A declarative check compiled: which request to make for a record, and how to judge it.

:class:`CheckConfig` is a check as configured (``checks.<type>[i]`` in the config) and
:func:`compile_check` turns it into a
:class:`CheckPlan` once, at config time, so a bad path or a contradictory rule is a
config error naming the key. At run time the plan builds a :class:`RequestParts` from a
record (and, in a fan-out, the current item) and judges an answer with its
:class:`Condition`. Pure: no I/O, no imports from the upstream layer.

Missing values: a path placeholder raises :class:`~processor.errors.FieldMissingError`; a
body value is sent as null (as before nested paths); a query parameter is left out; a list
value repeats the parameter (``sku=a&sku=b``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from processor.batchplan import BatchConfig
from processor.errors import FieldMissingError
from processor.evidence import bounded
from processor.fieldpaths import (
    EACH,
    MISSING,
    FieldPath,
    Template,
    check_path,
    compile_template,
    parse_path,
    query_text,
    walk,
)

#: In a fan-out, paths whose first key is this resolve against the current item.
ITEM = "item"
_ORDER_OPS = {
    "gte": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "lte": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
}
_SYMBOLS = {"equals": "==", "not_equals": "!=", "in": "in", "gte": ">=", "gt": ">",
            "lte": "<=", "lt": "<"}  # fmt: skip


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Condition:
    """``field op (value | value_field)`` on an answer."""

    field: FieldPath
    op: str
    value: Any
    value_field: FieldPath | None

    def holds(self, actual: Any, expected: Any) -> bool:
        if self.op == "present":
            return actual is not MISSING and actual is not None
        if actual is MISSING:
            actual = None
        if self.op == "equals":
            return bool(actual == expected)
        if self.op == "not_equals":
            return bool(actual != expected)
        if self.op == "in":
            return isinstance(expected, list) and actual in expected
        return _is_number(actual) and _is_number(expected) and _ORDER_OPS[self.op](actual, expected)

    def describe(self, evidence: Mapping[str, Any]) -> str:
        """Why it did not hold, from a judged answer's evidence."""
        actual = evidence.get(self.field.text)
        if self.op == "present":
            return f"{self.field.text} is missing"
        rhs = repr(self.value)
        if self.value_field is not None:
            rhs = f"{self.value_field.text} ({evidence.get(self.value_field.text)!r})"
        return f"{self.field.text} is {actual!r}, expected {_SYMBOLS[self.op]} {rhs}"


@dataclass(frozen=True, slots=True)
class RequestParts:
    """What to send, before the transport's types: path rendered, query pairs, JSON body."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    json_body: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class CheckPlan:
    """A declarative check, compiled."""

    method: str
    path: Template
    query: tuple[tuple[str, FieldPath], ...]
    body: tuple[tuple[str, FieldPath], ...]
    for_each: FieldPath | None
    max_items: int
    condition: Condition
    reason: FieldPath | None

    def lookup(self, data: Any, item: Any = MISSING) -> Callable[[FieldPath], Any]:
        """Resolve paths against the record, or the item for ``item...`` in a fan-out."""
        fan_out = self.for_each is not None

        def resolve(path: FieldPath) -> Any:
            if fan_out and path.head == ITEM:
                return walk(item, path.tail())
            return path.resolve(data)

        return resolve

    def request(self, data: Any, item: Any = MISSING) -> RequestParts:
        """The request for one record (one item of a fan-out).

        Raises:
            FieldMissingError: A path placeholder has no value.
        """
        resolve = self.lookup(data, item)
        query: list[tuple[str, str]] = []
        for name, path in self.query:
            value = resolve(path)
            for one in value if isinstance(value, list) else [value]:
                if one is not MISSING and one is not None:
                    query.append((name, query_text(one)))
        body = None
        if self.method != "GET":
            body = {}
            for key, path in self.body:
                value = resolve(path)
                body[key] = None if value is MISSING else value
        return RequestParts(self.method, self.path.render(resolve), tuple(query), body)

    def judge(
        self, answer: Mapping[str, Any], data: Any, item: Any = MISSING
    ) -> tuple[bool, dict[str, Any]]:
        """Whether an answer passes, and the evidence kept from it (bounded): the field the
        condition reads, the value it compares with, and the reason field.

        Raises:
            FieldMissingError: ``value_field`` has no value in the record.
        """
        cond = self.condition
        expected = cond.value
        # What the verdict rests on, no more: the answer's echo of the request (the e-mail,
        # the SKU) would repeat the record's own data in its outcome.
        evidence: dict[str, Any] = {}
        if cond.value_field is not None:
            expected = self.lookup(data, item)(cond.value_field)
            if expected is MISSING:
                raise FieldMissingError(
                    f"pass_when.value_field: {cond.value_field.text} has no value"
                )
            evidence[cond.value_field.text] = bounded(expected)
        actual = cond.field.resolve(answer)
        if actual is not MISSING:
            evidence[cond.field.text] = bounded(actual)
        if self.reason is not None:
            why = self.reason.resolve(answer)
            if why is not MISSING:
                evidence[self.reason.text] = bounded(why)
        return cond.holds(actual, expected), evidence


def _path(where: str, text: str, *, one_value: bool = False) -> FieldPath:
    try:
        path = parse_path(text)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if one_value and path.fans_out:
        raise ValueError(f"{where}: {text} must name one value, not [*]")
    return path


def _condition(cfg: CheckConfig) -> Condition:
    if cfg.pass_when is None:
        if cfg.pass_field is None:
            raise ValueError("needs pass_when or pass_field (exactly one)")
        field = _path("pass_field", cfg.pass_field, one_value=True)
        return Condition(field, "equals", cfg.pass_equals, None)
    if cfg.pass_field is not None or "pass_equals" in cfg.model_fields_set:
        raise ValueError("pass_when and pass_field/pass_equals are two forms: use one")
    return _pass_when(cfg.pass_when)


def _pass_when(rule: PassCondition) -> Condition:
    field = _path("pass_when.field", rule.field, one_value=True)
    has_value = "value" in rule.model_fields_set
    if rule.op == "present":
        if has_value or rule.value_field is not None:
            raise ValueError("pass_when: op present takes no value or value_field")
        return Condition(field, rule.op, None, None)
    if has_value == (rule.value_field is not None):
        raise ValueError(f"pass_when: op {rule.op} needs value or value_field (exactly one)")
    if rule.value_field is not None:
        other = _path("pass_when.value_field", rule.value_field, one_value=True)
        return Condition(field, rule.op, None, other)
    if rule.op == "in" and not isinstance(rule.value, list):
        raise ValueError("pass_when: op in needs a list value")
    if rule.op in _ORDER_OPS and not _is_number(rule.value):
        raise ValueError(f"pass_when: op {rule.op} needs a number value")
    return Condition(field, rule.op, rule.value, None)


def compile_check(cfg: CheckConfig) -> CheckPlan | None:
    """Compile a check's request and rule; None for a custom check.

    Raises:
        ValueError: The message names the offending key.
    """
    if cfg.when_present is not None:
        _path("when_present", cfg.when_present)
    if cfg.custom is not None:
        used = [k for k in ("method", "path", "query", "body", "for_each", "max_items",
                            "pass_field", "pass_equals", "pass_when", "reason_field", "batch")
                if k in cfg.model_fields_set]  # fmt: skip
        if used:
            raise ValueError(f"a custom check takes no {', '.join(used)}")
        return None
    if cfg.path is None:
        raise ValueError("path is required (or custom, for a custom check)")
    if cfg.method == "GET" and cfg.body:
        raise ValueError("a GET sends no body: use query")
    try:
        path = compile_template(cfg.path)
    except ValueError as exc:
        raise ValueError(f"path: {exc}") from None
    if cfg.batch is not None:
        _batchable(cfg, cfg.batch)
    for_each = None
    if cfg.for_each is not None:
        for_each = _path("for_each", cfg.for_each, one_value=True)
    elif "max_items" in cfg.model_fields_set:
        raise ValueError("max_items needs for_each")
    return CheckPlan(
        method=cfg.method,
        path=path,
        query=tuple((k, _path(f"query.{k}", v)) for k, v in cfg.query.items()),
        body=tuple((k, _path(f"body.{k}", v)) for k, v in cfg.body.items()),
        for_each=for_each,
        max_items=cfg.max_items,
        condition=_condition(cfg),
        reason=None if cfg.reason_field is None else _path("reason_field", cfg.reason_field),
    )


def _batchable(cfg: CheckConfig, batch: BatchConfig) -> None:
    """A batch item is the single call's JSON body, so the single call must be a POST whose
    path and query say nothing about the record."""
    if cfg.method != "POST" or not cfg.body:
        raise ValueError("batch: needs a POST check with a body (a batch item is that body)")
    if "{" in (cfg.path or "") or cfg.query:
        raise ValueError("batch: the check's path has placeholders or a query: a batch item "
                         "carries only the body")  # fmt: skip
    if batch.item_key is not None and batch.item_key not in cfg.body:
        raise ValueError(f"batch.item_key: {batch.item_key} is not a key of body "
                         f"({', '.join(cfg.body)})")  # fmt: skip


def record_paths(cfg: CheckConfig) -> list[tuple[str, FieldPath]]:
    """Each record field path a check uses, with the key it came from; item paths of a
    fan-out are given as ``<for_each>[*].<rest>``."""
    found: list[tuple[str, FieldPath]] = []
    if cfg.when_present is not None:
        found.append(("when_present", parse_path(cfg.when_present)))
    plan = None if cfg.custom is not None else cfg.plan
    if plan is None:
        return found
    found += [(f"query.{k}", p) for k, p in plan.query]
    found += [(f"body.{k}", p) for k, p in plan.body]
    found += [("path", p) for p in plan.path.paths]
    if plan.condition.value_field is not None:
        found.append(("pass_when.value_field", plan.condition.value_field))
    if plan.for_each is None:
        return found
    each = plan.for_each
    out = [("for_each", each)]
    for where, path in found:
        if path.head == ITEM:
            segments = (*each.segments, EACH, *path.tail())
            text = (
                each.text
                + "[*]"
                + "".join(
                    f".{s}" if isinstance(s, str) and s != EACH else f"[{s}]" for s in path.tail()
                )
            )
            path = FieldPath(text, segments)
        out.append((where, path))
    return out


def schema_problems(cfg: CheckConfig, record_schema: Mapping[str, Any]) -> list[str]:
    """``"<key>: <problem>"`` for each record path that cannot exist in ``record_schema``."""
    problems = []
    for where, path in record_paths(cfg):
        problem = check_path(path, record_schema)
        if problem is not None:
            problems.append(f"{where}: {path.text}: {problem}")
    return problems


class _FrozenSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PassCondition(_FrozenSpec):
    """When a check passes: a comparison on one (possibly nested) field of the answer.

    ``field`` is a field path in the response body (``stock.available``). The right-hand
    side is a literal ``value`` or ``value_field``, a field path in the record (or, in a
    fan-out, ``item.<path>`` in the current item). ``present`` takes neither: it passes
    when the field is there and not null. ``in`` takes a list literal. ``gte``/``gt``/
    ``lte``/``lt`` compare numbers; a missing or non-numeric answer does not pass.
    """

    field: str
    op: Literal["equals", "not_equals", "in", "gte", "gt", "lte", "lt", "present"] = "equals"
    value: bool | int | float | str | list[bool | int | float | str] | None = None
    value_field: str | None = None


class CheckConfig(_FrozenSpec):
    """One upstream check: a declarative HTTP request and a rule on its answer, or the
    import path of a custom Python check (see :mod:`processor.sdk`).

    Declarative: ``path`` is a template (``/v1/stock/{sku}``); ``query`` and ``body`` map
    request keys to field paths (``customer.email``, ``lines[*].sku``). GET sends no body.
    ``for_each`` (a list field path) makes one call per item, where paths starting with
    ``item`` resolve against the current item; the record fails if any item fails, and a
    list longer than ``max_items`` fails the check without calling. The check passes when
    ``pass_when`` holds, or (the shorthand) the answer's ``pass_field`` equals
    ``pass_equals``; any other 2xx answer is a clear "no" (``upstream.rejected``), explained
    by ``reason_field`` when present. Paths are compiled once, when the config is read.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    upstream: str
    custom: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="package.module:function, an async custom check (processor.sdk)",
    )
    method: Literal["GET", "POST"] = "POST"
    path: str | None = Field(default=None, pattern=r"^/")
    query: dict[str, str] = Field(default_factory=dict, description="param -> field path")
    body: dict[str, str] = Field(default_factory=dict, description="key -> field path")
    for_each: str | None = Field(default=None, description="list field path: one call per item")
    max_items: int = Field(default=100, ge=1, le=10_000, description="calls per record, at most")
    pass_field: str | None = None
    pass_equals: bool | int | str = True
    pass_when: PassCondition | None = None
    reason_field: str | None = None
    when_present: str | None = Field(default=None, description="run only if this field is set")
    required: bool = True
    batch: BatchConfig | None = Field(default=None, description="a batch endpoint (optional)")
    _plan: CheckPlan | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compiles(self) -> CheckConfig:
        self._plan = compile_check(self)
        return self

    @property
    def plan(self) -> CheckPlan:
        """The compiled request and pass rule (declarative checks only)."""
        if self._plan is None:
            raise TypeError(f"check {self.name} is a custom check: it has no plan")
        return self._plan

    def schema_problems(self, record_schema: Mapping[str, Any]) -> list[str]:
        """Every record field path this check uses that cannot exist in the record type."""
        return schema_problems(self, record_schema)
