"""What a valid or invalid outcome looks like on its topic: the record's value and headers.

Each of the two topics has its own payload (``outcomes.valid_payload`` and
``outcomes.invalid_payload``):

- ``document`` (the default): the :class:`~schemas.outcomes.OutcomeDocument` as JSON, for
  consumers that want the verdict, the reasons, the per-check evidence and the input's
  coordinates in one value (the bytes pydantic writes, written by orjson from the plain
  data: :mod:`processor.documents`).
- ``record``: the record itself as a structured-mode CloudEvent (the input's attributes, the
  normalised ``data`` when the record is valid, the data as received when it is not), so a
  consumer of the valid topic reads records, not wrappers. The verdict, the checks and the
  reasons travel in ``record.*`` headers.

Both payloads carry the input's own headers (``traceparent``, a tenant header, ...), except
the ones whose meaning the outcome replaces: ``content-type`` (the payload's own), ``ce_*``
(binary-mode CloudEvent attributes: the attributes are in the payload now, and a stale
``ce_*`` header would describe the wrong value), and ``record.*`` / ``dlq.*`` (ours). Dead
letters keep every input header byte for byte (see :mod:`processor.outcomes`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from processor.documents import OutcomeData
from schemas.envelope import BINARY_HEADER_PREFIX, STRUCTURED_CONTENT_TYPE
from schemas.outcomes import OutcomeDocument

Payload = Literal["document", "record"]
Headers = list[tuple[str, bytes]]

#: Input headers that an outcome does not carry over (compared in lower case).
REPLACED_HEADER = "content-type"
REPLACED_PREFIXES = (BINARY_HEADER_PREFIX, "record.", "dlq.")
#: Bound on the ``record.reasons`` header: the reasons that fit, in order, and no more.
MAX_REASONS_HEADER_BYTES = 8_192

_DATA_KEYS = ("data", "data_base64")


def propagated(headers: Sequence[tuple[str, bytes]]) -> Headers:
    """The input headers an outcome carries, in their original order."""
    kept = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == REPLACED_HEADER or lowered.startswith(REPLACED_PREFIXES):
            continue
        kept.append((name, value))
    return kept


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _reasons_header(doc: OutcomeData) -> bytes:
    """The reasons as a JSON array, dropping trailing ones past the header's bound."""
    reasons = [r.model_dump(exclude_none=True, mode="json") for r in doc.reasons]
    encoded = _compact(reasons)
    while len(encoded) > MAX_REASONS_HEADER_BYTES and len(reasons) > 1:
        reasons.pop()
        encoded = _compact(reasons)
    return encoded


def document_message(
    doc: OutcomeData, input_headers: Sequence[tuple[str, bytes]]
) -> tuple[bytes, Headers]:
    """The outcome document as JSON, with the input's headers and three of our own."""
    headers = propagated(input_headers)
    headers += [
        ("content-type", b"application/json"),
        ("record.id", doc.record_id.encode()),
        ("record.verdict", doc.verdict.value.encode()),
    ]
    return doc.json(), headers


def record_message(
    doc: OutcomeData, input_headers: Sequence[tuple[str, bytes]]
) -> tuple[bytes, Headers]:
    """The record as a structured CloudEvent; verdict, checks and reasons in headers."""
    received: dict[str, Any] = doc.fields["event"]
    normalized: dict[str, Any] | None = doc.fields["normalized_data"]
    event = {k: v for k, v in received.items() if k not in _DATA_KEYS}
    data = normalized if normalized is not None else received.get("data")
    if data is not None:
        event["datacontenttype"] = "application/json"
        event["data"] = data
    elif "data_base64" in received:
        event["data_base64"] = received["data_base64"]
    headers = propagated(input_headers)
    headers += [
        ("content-type", STRUCTURED_CONTENT_TYPE.encode()),
        ("record.id", doc.record_id.encode()),
        ("record.verdict", doc.verdict.value.encode()),
        ("record.checks", _compact({c.name: c.status.value for c in doc.checks})),
    ]
    if doc.reasons:
        headers.append(("record.reasons", _reasons_header(doc)))
    at = doc.fields["input"]
    headers.append(("record.input", f"{at['topic']}/{at['partition']}/{at['offset']}".encode()))
    return _compact(event), headers


def encode(
    payload: Payload,
    doc: OutcomeData | OutcomeDocument,
    input_headers: Sequence[tuple[str, bytes]],
) -> tuple[bytes, Headers]:
    """The value and headers of one valid or invalid outcome in the given payload."""
    if isinstance(doc, OutcomeDocument):
        doc = OutcomeData.of(doc)
    if payload == "record":
        return record_message(doc, input_headers)
    return document_message(doc, input_headers)
