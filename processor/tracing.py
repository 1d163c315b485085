"""Optional OpenTelemetry tracing (the ``[otel]`` extra): one span per record, linked to its
producer.

The only module that imports OpenTelemetry, and only when ``tracing.enabled`` is true
(:func:`install`); otherwise every function here is a no-op that costs a global lookup (the
span functions hand back one shared ``nullcontext``: a generator-based context manager per
record and check cost 2.5 µs each, measured with ``docs/bench/hot_path.py``).

- Each record's processing is a ``<input topic> process`` span (kind CONSUMER, a new trace)
  with a *link* to the producer's context from the input's ``traceparent`` header (a link,
  not a parent: the messaging conventions' choice for a consumer that may batch or retry),
  with the verdict and reason as attributes.
- Each check of the record is a ``check <name>`` child span; the upstream call made inside
  it carries a ``traceparent`` header (:func:`inject`).
- Publishing the outcome is a ``<topic> publish`` child span (kind PRODUCER); a valid or
  invalid outcome record carries a fresh ``traceparent`` (:func:`outcome_headers`), while a
  dead letter keeps the input's headers byte for byte.

The exporter is OTLP over HTTP, configured by the standard environment
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``); spans are exported from the SDK's own thread,
never on the event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from processor.errors import ConfigError
from processor.inputs import InputRecord

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

TRACE_HEADERS = ("traceparent", "tracestate")
#: What every span function returns while tracing is off: no span (reusable, reentrant).
_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()
_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def require() -> None:
    """Check that the ``[otel]`` extra is installed (``check-config``, ``run``).

    Raises:
        ConfigError: It is not.
    """
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "tracing.enabled needs the otel extra: pip install 'record-processor[otel]'"
        ) from exc


def install(service_name: str, instance_id: str, exporter: SpanExporter | None = None) -> None:
    """Start tracing: OTLP/HTTP from the ``OTEL_*`` environment, or ``exporter`` (tests).

    Raises:
        ConfigError: The ``[otel]`` extra is not installed.
    """
    global _tracer, _provider  # one tracer per process, like the SDK's own
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            "tracing.enabled needs the otel extra: pip install 'record-processor[otel]'"
        ) from exc
    resource = Resource.create({"service.instance.id": instance_id})  # + OTEL_RESOURCE_...
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service_name}))  # no OTEL_SERVICE_NAME
    provider = TracerProvider(resource=resource)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider, _tracer = provider, provider.get_tracer("record-processor")


def active() -> bool:
    """True while tracing is installed."""
    return _tracer is not None


def uninstall() -> None:
    """Export what is left (bounded by the SDK's own timeouts) and stop tracing."""
    global _tracer, _provider  # one tracer per process, like the SDK's own
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def _context_of(headers: Sequence[tuple[str, bytes | None]]) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {}
    for key, value in headers:
        if key in TRACE_HEADERS and value is not None:
            carrier[key] = value.decode("latin-1")
    return TraceContextTextMapPropagator().extract(carrier) if carrier else None


def record_span(record: InputRecord) -> AbstractContextManager[Span | None]:
    """The span of one record's processing, current for the block (None: not tracing)."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return _record_span(tracer, record)


@contextlib.contextmanager
def _record_span(tracer: Tracer, record: InputRecord) -> Iterator[Span]:
    from opentelemetry import context, trace

    links = []
    producer = _context_of(record.headers)
    if producer is not None:
        span_context = trace.get_current_span(producer).get_span_context()
        if span_context.is_valid:
            links.append(trace.Link(span_context))
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
    }
    with tracer.start_as_current_span(
        f"{record.topic} process", context=context.Context(), kind=trace.SpanKind.CONSUMER,
        links=links, attributes=attributes,
    ) as span:  # fmt: skip
        yield span


def annotate(span: Span | None, verdict: str, reason: str) -> None:
    """The record's verdict and first reason code on its span."""
    if span is not None:
        span.set_attribute("record.verdict", verdict)
        span.set_attribute("record.reason", reason)


def check_span(check: str, upstream: str) -> AbstractContextManager[Span | None]:
    """A child span for one check of the current record."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    attributes = {"check.name": check, "upstream.name": upstream}
    return tracer.start_as_current_span(f"check {check}", attributes=attributes)


def publish_span(topic: str) -> AbstractContextManager[Span | None]:
    """A child span for publishing the current record's outcome to ``topic``."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return _publish_span(tracer, topic)


@contextlib.contextmanager
def _publish_span(tracer: Tracer, topic: str) -> Iterator[Span]:
    from opentelemetry import trace

    attributes = {"messaging.system": "kafka", "messaging.operation.type": "send",
                  "messaging.destination.name": topic}  # fmt: skip
    with tracer.start_as_current_span(
        f"{topic} publish", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        yield span


def inject(headers: dict[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to an HTTP request's."""
    if _tracer is None:
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    TraceContextTextMapPropagator().inject(headers)


def outcome_headers(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """``headers`` with the input's trace context replaced by the current span's."""
    if _tracer is None:
        return headers
    fresh: dict[str, str] = {}
    inject(fresh)
    kept = [(k, v) for k, v in headers if k not in TRACE_HEADERS]
    return kept + [(k, v.encode("latin-1")) for k, v in fresh.items()]
