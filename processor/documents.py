"""The outcome document on the hot path: built as plain data, encoded with orjson.

:class:`~schemas.outcomes.OutcomeDocument` stays the contract: the JSON Schema is exported
from it, the validation API answers with it, and :attr:`OutcomeData.model` builds it on
demand. But building the model for every record re-validated values the pipeline had just
validated, and dumping it walked them once more: a valid customer's document took 30 µs to
build and dump on the bench machine, the same fields as a dict encoded with orjson 10 µs
(``docs/bench/hot_path_parts.py``; the orjson dependency rests on this measurement).

:class:`OutcomeData` holds the model's fields in the model's order (nested documents as
dicts, reasons and check results as their models' field dicts), so orjson writes the bytes
pydantic would: the same keys in the same order, enums as their values, datetimes with
``Z`` for UTC (``OPT_UTC_Z``), NaN and infinities as ``null``. ``tests/unit/test_documents.py``
proves it byte for byte over the corpora, every outcome kind and random JSON values. What
orjson refuses (an integer beyond 64 bits, nesting past about 250 levels, a lone surrogate) is
dumped by pydantic, as before. Values the model would refuse (more checks than it allows, a
negative offset) are handed to the model at once, so they fail where they failed before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from annotated_types import MaxLen

from schemas.outcomes import CheckResult, OutcomeDocument, ProcessorInfo, Reason, Verdict

_ORJSON_OPTIONS = orjson.OPT_UTC_Z


def _max_length(field: str) -> int:
    """The model's ``max_length`` of ``field`` (the bound the fast path checks too)."""
    return next(
        m.max_length for m in OutcomeDocument.model_fields[field].metadata if isinstance(m, MaxLen)
    )


_MAX_LENGTHS = {name: _max_length(name) for name in ("record_id", "record_type", "source")}
_MAX_REASONS = _max_length("reasons")
_MAX_CHECKS = _max_length("checks")


class OutcomeData:
    """One outcome document as plain data: what is published, and the model on demand."""

    __slots__ = ("_model", "checks", "fields", "reasons")

    def __init__(
        self,
        fields: dict[str, Any],
        reasons: list[Reason],
        checks: list[CheckResult],
        model: OutcomeDocument | None = None,
    ) -> None:
        """``fields`` in :class:`OutcomeDocument`'s order, its ``reasons`` and ``checks``
        as the models' field dicts of ``reasons`` and ``checks``; ``model`` if built."""
        self.fields = fields
        self.reasons = reasons
        self.checks = checks
        self._model = model

    @classmethod
    def build(
        cls,
        *,
        outcome: Literal["valid", "invalid"],
        verdict: Verdict,
        record_id: str,
        record_type: str,
        source: str,
        reasons: list[Reason],
        checks: list[CheckResult],
        event: dict[str, Any],
        normalized_data: dict[str, Any] | None,
        unknown_fields: dict[str, Any] | None,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None,
        key: str | None,
        processor: ProcessorInfo,
        received_at: datetime,
        completed_at: datetime,
        duration_ms: float,
    ) -> OutcomeData:
        """The document of these values, as :class:`OutcomeDocument` would hold them.

        Raises:
            pydantic.ValidationError: A value the model refuses (as building it would).
        """
        fields = {
            "schema_version": "outcome.v1",
            "outcome": outcome,
            "verdict": verdict,
            "record_id": record_id,
            "record_type": record_type,
            "source": source,
            "reasons": [r.__dict__ for r in reasons],
            "checks": [c.__dict__ for c in checks],
            "event": event,
            "normalized_data": normalized_data,
            "unknown_fields": unknown_fields,
            "input": {
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "timestamp_ms": timestamp_ms,
                "key": key,
            },
            "processor": processor.__dict__,
            "timing": {
                "received_at": received_at,
                "completed_at": completed_at,
                "duration_ms": duration_ms,
            },
        }
        data = cls(fields, reasons, checks)
        if (
            len(record_id) > _MAX_LENGTHS["record_id"]
            or len(record_type) > _MAX_LENGTHS["record_type"]
            or len(source) > _MAX_LENGTHS["source"]
            or len(reasons) > _MAX_REASONS
            or len(checks) > _MAX_CHECKS
            or partition < 0
            or offset < 0
            or duration_ms < 0
        ):
            data.model  # noqa: B018 - raises the model's ValidationError, as building it did
        return data

    @classmethod
    def of(cls, model: OutcomeDocument) -> OutcomeData:
        """The plain data of a model built elsewhere (a test, a caller of the pipeline)."""
        fields = dict(model.__dict__)
        fields["reasons"] = [r.__dict__ for r in model.reasons]
        fields["checks"] = [c.__dict__ for c in model.checks]
        for nested in ("input", "processor", "timing"):
            fields[nested] = fields[nested].__dict__
        return cls(fields, list(model.reasons), list(model.checks), model)

    @property
    def model(self) -> OutcomeDocument:
        """The document as the pydantic model, validated (built once, on first use)."""
        if self._model is None:
            self._model = OutcomeDocument.model_validate(
                {**self.fields, "reasons": self.reasons, "checks": self.checks}
            )
        return self._model

    @property
    def outcome(self) -> Literal["valid", "invalid"]:
        return self.fields["outcome"]  # type: ignore[no-any-return]

    @property
    def verdict(self) -> Verdict:
        return self.fields["verdict"]  # type: ignore[no-any-return]

    @property
    def record_id(self) -> str:
        return self.fields["record_id"]  # type: ignore[no-any-return]

    def json(self) -> bytes:
        """The document as JSON: the bytes of ``model.model_dump_json()``, UTF-8.

        Raises:
            ValueError: The document holds text that is not valid Unicode (a lone surrogate).
        """
        try:
            return orjson.dumps(self.fields, option=_ORJSON_OPTIONS)
        except orjson.JSONEncodeError:  # a big integer, deep nesting, a lone surrogate
            return self.model.model_dump_json().encode()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutcomeData) and other.fields == self.fields

    __hash__ = None  # type: ignore[assignment] # mutable data, like the model's dicts

    def __repr__(self) -> str:
        return f"OutcomeData({self.fields!r})"
