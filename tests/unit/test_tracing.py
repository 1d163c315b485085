"""Tracing off costs nothing and changes nothing; on, outcome headers get a fresh context."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from processor import tracing
from processor.inputs import Record

PRODUCER = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing installed with an in-memory exporter for the test, off afterwards."""
    exported = InMemorySpanExporter()
    tracing.install("test", "i-1", exported)
    yield exported
    tracing.uninstall()


def test_without_install_every_call_is_a_no_op() -> None:
    """No tracer: no span, headers untouched, nothing injected into upstream calls."""
    record = Record("in", 0, 1, 0, None, b"{}", [("traceparent", PRODUCER)])
    with tracing.record_span(record) as span:
        assert span is None
    headers = [("traceparent", PRODUCER), ("a", b"1")]
    assert tracing.outcome_headers(headers) is headers
    upstream: dict[str, str] = {}
    tracing.inject(upstream)
    assert upstream == {}


def test_outcome_headers_replace_the_inputs_context_with_the_current_span(
    exporter: InMemorySpanExporter,
) -> None:
    """Inside the publish span, an outcome's traceparent is that span's, other headers kept."""
    record = Record("in", 0, 1, 0, None, b"{}", [("traceparent", PRODUCER)])
    with tracing.record_span(record), tracing.publish_span("valid") as publish:
        assert publish is not None
        headers = tracing.outcome_headers([("traceparent", PRODUCER), ("a", b"1")])
        own = publish.get_span_context()
    assert headers[0] == ("a", b"1")
    assert headers[1][0] == "traceparent"
    assert headers[1][1].startswith(f"00-{own.trace_id:032x}-{own.span_id:016x}-".encode())
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["valid publish"].parent is not None
    assert [f"{link.context.span_id:016x}" for link in spans["in process"].links] == [
        "00f067aa0ba902b7"
    ]


def test_a_malformed_producer_context_gives_no_link(exporter: InMemorySpanExporter) -> None:
    """A traceparent that does not parse is ignored: the record's span has no link."""
    record = Record("in", 0, 1, 0, None, b"{}", [("traceparent", b"\xff garbage")])
    with tracing.record_span(record) as span:
        assert span is not None
    (finished,) = exporter.get_finished_spans()
    assert list(finished.links) == []
