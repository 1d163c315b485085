"""The processor's one exception hierarchy.

::

    ProcessorError                     base of everything we raise on purpose
    ├── ConfigError                    bad configuration; the CLI exits 2 before connecting
    ├── RecordError                    one record cannot be processed (carries a ReasonCode)
    │   ├── RecordTooLarge             record.too_large
    │   ├── DecodeError                decode.failed
    │   ├── EnvelopeError              envelope.invalid
    │   ├── UnknownTypeError           type.unknown
    │   └── FieldMissingError          internal.error: a check needs a value the record lacks
    ├── UpstreamError                  an upstream call failed (carries ``retriable``)
    │   ├── UpstreamTimeout            upstream.timeout            retriable
    │   ├── UpstreamUnavailable        upstream.unavailable (5xx, refused) retriable
    │   ├── UpstreamRateLimited        upstream.rate_limited (429) retriable
    │   └── UpstreamBadResponse        upstream.bad_response       not retriable
    ├── PublishError                   an outcome could not be published: fatal for the process
    ├── RecordRejected                 the Kafka client refused one record as it is (too large,
    │                                  neither key nor value): that record gets a fallback
    ├── KafkaUnavailable               the broker could not be reached or refused a request
    │   ├── CommitFailed               an offset commit was refused (rebalance) or failed: not fatal
    │   │                                  (exactly-once: a transaction not committed, fatal)
    │   └── PartitionFenced            exactly-once: another instance's producer took over an
    │                                  input partition; its uncommitted work is dropped
    └── EndpointError                  the operations endpoint could not start (port taken)

Third-party errors are translated at one boundary each: aiohttp's in
``processor.upstream.client``, aiokafka's in ``processor.kafka``. Callers branch on
``retriable`` and ``reason``, never on lists of types; uvicorn's bind failure in
``processor.endpoint``.
"""

from __future__ import annotations

from schemas.outcomes import ReasonCode


class ProcessorError(Exception):
    """Base of every error the processor raises on purpose."""


class ConfigError(ProcessorError):
    """The configuration is invalid. The message names the offending key."""


class RecordError(ProcessorError):
    """A record cannot be processed; it is dead-lettered with :attr:`reason`."""

    reason: ReasonCode = ReasonCode.INTERNAL_ERROR


class RecordTooLarge(RecordError):
    reason = ReasonCode.RECORD_TOO_LARGE


class DecodeError(RecordError):
    reason = ReasonCode.DECODE_FAILED


class EnvelopeError(RecordError):
    reason = ReasonCode.ENVELOPE_INVALID


class UnknownTypeError(RecordError):
    reason = ReasonCode.TYPE_UNKNOWN


class FieldMissingError(RecordError):
    """A check needs a record value (a path placeholder, a compared field) that is absent:
    the record type should require it, or the check should use ``when_present``. The
    record is dead-lettered, to be replayed once the configuration is fixed."""


class UpstreamError(ProcessorError):
    """An upstream call failed. ``retriable`` says whether trying again may help."""

    reason: ReasonCode = ReasonCode.UPSTREAM_UNAVAILABLE
    retriable: bool = True

    def __init__(self, message: str, *, upstream: str, status: int | None = None) -> None:
        super().__init__(message)
        self.upstream = upstream
        self.status = status
        #: Attempts made before giving up (set by the retry policy).
        self.attempts = 1


class UpstreamTimeout(UpstreamError):
    reason = ReasonCode.UPSTREAM_TIMEOUT


class UpstreamUnavailable(UpstreamError):
    reason = ReasonCode.UPSTREAM_UNAVAILABLE


class UpstreamRateLimited(UpstreamError):
    reason = ReasonCode.UPSTREAM_RATE_LIMITED

    def __init__(self, message: str, *, upstream: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, upstream=upstream, status=429)
        self.retry_after_s = retry_after_s


class UpstreamBadResponse(UpstreamError):
    reason = ReasonCode.UPSTREAM_BAD_RESPONSE
    retriable = False


class PublishError(ProcessorError):
    """The broker did not acknowledge an outcome. The record is not committed; we stop."""


class RecordRejected(ProcessorError):
    """The producer refused one record as it is: over ``max_request_size``, neither key nor
    value, or a header it cannot encode. That record's problem, never the process's: the
    publisher sends a fallback dead letter that fits instead."""


class KafkaUnavailable(ProcessorError):
    """The broker could not be reached or refused a request (translated aiokafka error)."""


class CommitFailed(KafkaUnavailable):
    """An offset commit failed (usually: the group is rebalancing). Logged, never fatal: the
    next commit, or the partition's next owner, covers the offsets."""


class PartitionFenced(KafkaUnavailable):
    """Exactly-once: the transactional producer of an input partition was fenced by a newer
    one (the partition's new owner). We lost the partition: its open transaction is aborted,
    its work is dropped without a commit, and the new owner redoes it."""


class EndpointError(ProcessorError):
    """The operations endpoint could not start (its port is taken, say); the process exits 1."""
