"""The input record as read from Kafka, before decoding: its coordinates and its bytes.

(The record *types*, the pydantic models of the data a record carries, are in
``schemas.records``.) :class:`InputRecord` is a structural type that aiokafka's
``ConsumerRecord`` satisfies, so the pipeline and engine can be unit-tested with plain
:class:`Record` values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class InputRecord(Protocol):
    """A record as read from the input topic."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Record:
    """A plain :class:`InputRecord`, for tests and tools."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
