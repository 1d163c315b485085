"""Outcome values and the publisher that turns them into Kafka records.

The pipeline returns one :data:`Outcome` per record, a value, never an exception:

- :class:`Valid` and :class:`Invalid` carry an outcome document, published to the valid /
  invalid topic keyed like the input, as the document itself or as the record with the
  verdict in headers (:mod:`processor.payloads`), with the input's headers. The document is
  plain data (:class:`~processor.documents.OutcomeData`, what is published) and, on demand,
  the ``OutcomeDocument`` model (``.document``).
- :class:`DeadLetter` carries a reason; the input's key, value, headers and timestamp are
  republished byte for byte to the dead-letter topic with the ``dlq.*`` headers of
  ``schemas.outcomes.DLQ_HEADERS`` (one set: old ``dlq.*`` headers are replaced).

:meth:`OutcomePublisher.publish` hands the record to the producer and returns the broker's
acknowledgement as a future; the engine counts a record finished only when it resolves.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from processor import tracing
from processor.config import OutcomesConfig, TopicsConfig
from processor.documents import OutcomeData
from processor.errors import RecordRejected
from processor.inputs import InputRecord
from processor.payloads import encode
from schemas.outcomes import OutcomeDocument, ReasonCode

MAX_ERROR_MESSAGE_CHARS = 512
#: A fallback dead letter keeps the key and the input headers while each stays under this.
FALLBACK_KEPT_BYTES = 16_384

log = structlog.get_logger("processor.outcomes")
#: A record batch of one record around its key, value and headers (v2 format, with room).
RECORD_OVERHEAD_BYTES = 128


class _Judged:
    """A record that was understood: its outcome document as plain data (``data``: what is
    published, built by the pipeline) and as the model (``document``: built on first use)."""

    __slots__ = ("data",)
    __match_args__ = ("document",)

    def __init__(self, document: OutcomeDocument | OutcomeData) -> None:
        self.data = document if isinstance(document, OutcomeData) else OutcomeData.of(document)

    @property
    def document(self) -> OutcomeDocument:
        """The outcome document as the pydantic model (validated once, then kept)."""
        return self.data.model

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Judged) and type(other) is type(self) and other.data == self.data

    __hash__ = None  # type: ignore[assignment] # the document holds dicts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"


class Valid(_Judged):
    """Understood, and passed every required check (``valid`` or ``valid_unverified``)."""

    __slots__ = ()


class Invalid(_Judged):
    """Understood, and definitely fails: a schema violation or an upstream's clear no."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a record could not be processed."""

    reason: ReasonCode
    error_class: str
    message: str
    attempts: int = 1
    first_failure_at: datetime | None = None


Outcome = Valid | Invalid | DeadLetter


def outcome_label(outcome: Outcome) -> tuple[str, str]:
    """``(outcome topic kind, reason code)``: ``("valid", "ok")``, ``("dead-letter",
    "decode.failed")``; the labels of the metrics and of the record's span."""
    if isinstance(outcome, DeadLetter):
        return "dead-letter", outcome.reason.value
    doc = outcome.data
    return doc.outcome, (doc.reasons[0].code.value if doc.reasons else "ok")


class Producer(Protocol):
    """The part of a Kafka producer the publisher uses (``processor.kafka.KafkaClients.producer``
    is aiokafka's; tests pass fakes). The service's one producer protocol."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]: ...


def dead_letter_headers(
    record: InputRecord,
    outcome: DeadLetter,
    processor_id: str,
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> list[tuple[str, bytes]]:
    """The input's headers (or ``headers``) without old ``dlq.*`` ones, plus this dead
    letter's set."""
    first = outcome.first_failure_at or datetime.now(UTC)
    source = record.headers if headers is None else headers
    kept = [(k, v) for k, v in source if not k.startswith("dlq.")]
    added = {
        "dlq.reason": outcome.reason.value,
        "dlq.error.class": outcome.error_class,
        "dlq.error.message": outcome.message[:MAX_ERROR_MESSAGE_CHARS],
        "dlq.original.topic": record.topic,
        "dlq.original.partition": str(record.partition),
        "dlq.original.offset": str(record.offset),
        "dlq.original.timestamp": str(record.timestamp),
        "dlq.attempts": str(outcome.attempts),
        "dlq.first.failure.time": first.isoformat(timespec="milliseconds"),
        "dlq.processor": processor_id,
    }
    # backslashreplace: a message may quote input that is not valid Unicode (a lone surrogate)
    return kept + [(k, v.encode("utf-8", "backslashreplace")) for k, v in added.items()]


def fallback_dead_letter(
    record: InputRecord, outcome: Outcome, error: Exception, processor_id: str
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of a dead letter that fits where the outcome did not.

    The value is left out (empty, never null: Kafka needs a key or a value) and
    ``dlq.value.omitted`` says why, ``dlq.value.bytes`` how large it was (``null`` for a null
    value); the key and the input's headers are kept while they stay under
    :data:`FALLBACK_KEPT_BYTES`. The ``dlq.original.*`` headers say where to find the record.
    The reason is the dead letter's own, or ``decode.failed`` for a verdict whose outcome
    could not be encoded (its input holds text that is not valid Unicode).
    """
    if isinstance(outcome, DeadLetter):
        dead = outcome
    else:
        dead = DeadLetter(
            reason=ReasonCode.DECODE_FAILED,
            error_class=type(error).__name__,
            message=f"the {outcome.data.verdict.value} outcome could not be encoded: {error}",
        )
    size = sum(len(k) + len(v or b"") for k, v in record.headers)
    kept_input = list(record.headers) if size <= FALLBACK_KEPT_BYTES else []
    headers = dead_letter_headers(record, dead, processor_id, kept_input)
    why = f"{type(error).__name__}: {error}"[:MAX_ERROR_MESSAGE_CHARS]
    headers += [
        ("dlq.value.omitted", why.encode("utf-8", "backslashreplace")),
        ("dlq.value.bytes", b"null" if record.value is None else str(len(record.value)).encode()),
    ]
    if not kept_input and record.headers:
        headers.append(("dlq.headers.omitted", str(len(record.headers)).encode()))
    key = record.key if record.key is not None and len(record.key) <= FALLBACK_KEPT_BYTES else None
    return key, b"", headers


def _pass_on(result: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
    """Settle ``result`` as ``done`` was settled (unless something settled it already)."""
    if result.done():
        return
    if done.cancelled():
        result.cancel()
    elif (error := done.exception()) is not None:
        result.set_exception(error)
    else:
        result.set_result(done.result())


class OutcomePublisher:
    """Publishes each outcome to its topic and returns the broker's acknowledgement."""

    def __init__(
        self,
        producer: Producer,
        topics: TopicsConfig,
        processor_id: str,
        payloads: OutcomesConfig | None = None,
        route: Callable[[tuple[str, int]], Producer] | None = None,
        rejected: Callable[[BaseException], bool] | None = None,
    ) -> None:
        """``route`` (exactly-once) picks the producer of each input partition instead.
        ``rejected`` tells an acknowledgement error that refuses one record (the broker's
        size limit for its topic) from a failure of the broker (at-least-once only: in a
        transaction any refused record aborts the whole transaction)."""
        self._producer = producer
        self._route = route
        self._rejected = rejected if route is None else None
        self._recovering: set[asyncio.Task[None]] = set()
        self._limits: dict[str, int] = {}
        self._topics = topics
        self._processor_id = processor_id
        payloads = payloads or OutcomesConfig()
        self._valid_payload = payloads.valid_payload
        self._invalid_payload = payloads.invalid_payload

    def refuse_over(self, limits: Mapping[str, int]) -> None:
        """Each outcome topic's ``max.message.bytes``: an outcome larger than its topic's
        limit is refused before it is sent (a fallback dead letter) instead of failing at
        the broker with the records batched with it."""
        self._limits = dict(limits)

    def _check_size(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        limit = self._limits.get(topic)
        if limit is None:
            return
        size = RECORD_OVERHEAD_BYTES + len(key or b"") + len(value or b"")
        size += sum(len(k) + len(v or b"") + 10 for k, v in headers)
        if size > limit:
            raise RecordRejected(
                f"MessageSizeTooLarge: about {size} bytes, over {topic}'s max.message.bytes {limit}"
            )

    def topic_for(self, outcome: Outcome) -> str:
        match outcome:
            case Valid():
                return self._topics.valid
            case Invalid():
                return self._topics.invalid
            case DeadLetter():
                return self._topics.dead_letter

    async def publish(self, record: InputRecord, outcome: Outcome) -> asyncio.Future[Any]:
        """Queue the outcome in the producer (waits only if its buffer is full).

        An outcome that cannot be published as it is (it cannot be encoded, or the producer
        refuses the record: too large, neither key nor value) is that record's problem: it
        becomes a fallback dead letter that certainly fits (:func:`fallback_dead_letter`).
        Only a failure to send that too reaches the caller (the broker refuses everything).
        """
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self.publish_then(record, outcome, functools.partial(_pass_on, result))
        return result

    async def publish_then(
        self, record: InputRecord, outcome: Outcome, on_ack: Callable[[asyncio.Future[Any]], None]
    ) -> None:
        """:meth:`publish` for the engine: instead of returning a future of its own, call
        ``on_ack`` with the acknowledgement (done) of the outcome, or of what replaced it.

        If the broker refuses the record (at-least-once), the same outcome is sent once more
        on its own (a batch-mate may have been the one too large), then its fallback dead
        letter; ``on_ack`` then sees the last one's. Anything else fails as it is.
        """
        try:
            ack = await self._publish(record, outcome)
        except (RecordRejected, ValueError) as exc:  # ValueError: encoding (lone surrogates)
            ack = await self._fallback(record, outcome, exc)
            ack.add_done_callback(on_ack)
            return
        if self._rejected is None:
            ack.add_done_callback(on_ack)
        else:
            ack.add_done_callback(functools.partial(self._acked, record, outcome, on_ack))

    async def _fallback(
        self, record: InputRecord, outcome: Outcome, exc: Exception
    ) -> asyncio.Future[Any]:
        key, value, headers = fallback_dead_letter(record, outcome, exc, self._processor_id)
        return await self._producer_for(record).send(
            self._topics.dead_letter, value=value, key=key, headers=headers
        )

    def _acked(
        self,
        record: InputRecord,
        outcome: Outcome,
        on_ack: Callable[[asyncio.Future[Any]], None],
        ack: asyncio.Future[Any],
    ) -> None:
        error = None if ack.cancelled() else ack.exception()
        if error is None or self._rejected is None or not self._rejected(error):
            on_ack(ack)
            return
        result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        result.add_done_callback(on_ack)
        task = asyncio.ensure_future(self._recover(record, outcome, error, result))
        self._recovering.add(task)
        task.add_done_callback(self._recovering.discard)

    async def _recover(
        self, record: InputRecord, outcome: Outcome, error: BaseException,
        result: asyncio.Future[Any],
    ) -> None:  # fmt: skip
        try:
            try:
                value = await (await self._publish(record, outcome))
            except Exception as again:  # refused again: the fallback decides
                if self._rejected is None or not self._rejected(again):
                    raise
                log.warning(
                    "outcome.refused_by_broker", topic=record.topic, partition=record.partition,
                    offset=record.offset, error=f"{type(error).__name__}: {error}",
                )  # fmt: skip
                value = await (await self._fallback(record, outcome, RecordRejected(str(again))))
        except Exception as exc:  # noqa: BLE001 - the caller's acknowledgement fails with it
            if not result.done():
                result.set_exception(exc)
            return
        if not result.done():
            result.set_result(value)

    def _producer_for(self, record: InputRecord) -> Producer:
        if self._route is None:
            return self._producer
        return self._route((record.topic, record.partition))

    async def _publish(self, record: InputRecord, outcome: Outcome) -> asyncio.Future[Any]:
        topic = self.topic_for(outcome)
        producer = self._producer_for(record)
        if isinstance(outcome, DeadLetter):
            headers = dead_letter_headers(record, outcome, self._processor_id)
            if self._limits:
                self._check_size(topic, record.key, record.value, headers)
            with tracing.publish_span(topic):  # the input's headers stay as they are
                return await producer.send(
                    topic, value=record.value, key=record.key, timestamp_ms=record.timestamp,
                    headers=headers,
                )  # fmt: skip
        payload = self._valid_payload if isinstance(outcome, Valid) else self._invalid_payload
        value, headers = encode(payload, outcome.data, record.headers)
        if self._limits:
            self._check_size(topic, record.key, value, headers)
        with tracing.publish_span(topic):
            headers = tracing.outcome_headers(headers)  # a fresh traceparent, when tracing
            return await producer.send(topic, value=value, key=record.key, headers=headers)
