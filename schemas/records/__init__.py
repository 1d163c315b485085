"""Record schemas, one module per CloudEvent ``type``, and the table that maps one to the other.

The processor looks a record's ``type`` up in :data:`RECORD_TYPES` and validates the event's
``data`` with the model it finds. A new version of a record is a new module and a new entry;
an existing entry never changes incompatibly (the JSON Schema snapshots guard that).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from pydantic import BaseModel

from schemas.records.customer_v1 import CustomerV1
from schemas.records.iban import iban_checksum_ok, make_iban
from schemas.records.transfer_v1 import TransferV1

__all__ = ["RECORD_TYPES", "CustomerV1", "TransferV1", "iban_checksum_ok", "make_iban"]

#: CloudEvent ``type`` to the model that validates the event's ``data``.
RECORD_TYPES: Final[Mapping[str, type[BaseModel]]] = MappingProxyType(
    {"customer.v1": CustomerV1, "transfer.v1": TransferV1}
)
