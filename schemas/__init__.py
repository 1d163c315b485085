"""The data contracts of the record processor: pydantic v2 models and nothing else.

- :mod:`schemas.envelope`: the CloudEvents 1.0 envelope every input record arrives in.
- :mod:`schemas.records`: one model per record ``type`` and :data:`RECORD_TYPES`, the table
  from ``type`` to model.
- :mod:`schemas.outcomes`: what the processor publishes (:class:`OutcomeDocument`), the
  reason-code catalogue and the dead-letter headers.
- :mod:`schemas.export`: the developer command that snapshots every model's JSON Schema.

This package does no I/O at import or validation time and imports nothing from
``processor``: the processor depends on its contracts, never the other way round.
"""

from schemas.envelope import (
    BINARY_HEADER_PREFIX,
    REQUIRED_ATTRIBUTES,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
)
from schemas.outcomes import (
    DLQ_HEADERS,
    REASON_CATALOGUE,
    CheckResult,
    CheckStatus,
    InputCoordinates,
    OutcomeDocument,
    ProcessorInfo,
    Reason,
    ReasonCode,
    Timing,
    Verdict,
)
from schemas.records import RECORD_TYPES, CustomerV1, TransferV1

__all__ = [
    "BINARY_HEADER_PREFIX",
    "DLQ_HEADERS",
    "REASON_CATALOGUE",
    "RECORD_TYPES",
    "REQUIRED_ATTRIBUTES",
    "STRUCTURED_CONTENT_TYPE",
    "CheckResult",
    "CheckStatus",
    "CloudEvent",
    "CustomerV1",
    "InputCoordinates",
    "OutcomeDocument",
    "ProcessorInfo",
    "Reason",
    "ReasonCode",
    "Timing",
    "TransferV1",
    "Verdict",
]
