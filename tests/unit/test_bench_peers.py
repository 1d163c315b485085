"""The benchmark's peer contestants judge records as the processor's schema-only scenario does."""

from __future__ import annotations

from devtools.bench.peer_job import judge
from devtools.corpus import build_corpus

UPSTREAM_DECIDED = ("upstream.",)


def test_peer_job_routes_the_demo_corpus_like_the_processor() -> None:
    """Every corpus record whose outcome needs no upstream lands where the corpus expects."""
    records = [r for r in build_corpus(400) if not r.expected_reason.startswith(UPSTREAM_DECIDED)]
    judged = [(r, judge(r.value, r.headers)) for r in records]
    assert {r.expected_topic for r in records} == {"valid", "invalid", "dead-letter"}
    wrong = [(r.label, j.route, j.reason) for r, j in judged
             if (j.route, j.reason) != (r.expected_topic, r.expected_reason)]  # fmt: skip
    assert wrong == []


def test_dead_letters_keep_the_original_value() -> None:
    """A dead letter carries the input's bytes unchanged."""
    assert judge(b"\xff not json").value == b"\xff not json"
