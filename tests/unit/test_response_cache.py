"""Tests of the response cache: what a key depends on, TTL expiry and LRU eviction."""

from __future__ import annotations

from typing import Any

import pytest

from processor.upstream.cache import ResponseCache, request_key
from processor.upstream.client import UpstreamRequest, UpstreamResponse
from tests.unit.fake_time import FakeTime

EMAIL = "/v1/email/verify"


def _request(
    body: dict[str, Any] | None = None,
    *,
    method: str = "POST",
    path: str = EMAIL,
    idempotency_key: str = "rec-1:email_deliverable",
) -> UpstreamRequest:
    return UpstreamRequest(
        method=method,
        path=path,
        json_body={"email": "alice@example.com"} if body is None else body,
        idempotency_key=idempotency_key,
    )


def _answer(tag: str) -> UpstreamResponse:
    return UpstreamResponse(status=200, body={"tag": tag}, latency_ms=1.0)


@pytest.mark.parametrize(
    ("body", "reordered"),
    [
        ({"email": "a@example.com", "country": "DE"}, {"country": "DE", "email": "a@example.com"}),
        ({"a": {"x": 1, "y": [1, 2]}, "b": None}, {"b": None, "a": {"y": [1, 2], "x": 1}}),
        ({"n": 2**70, "id": "é"}, {"id": "é", "n": 2**70}),  # beyond orjson: the stdlib's
    ],
    ids=["flat", "nested", "big-integer"],
)
def test_key_does_not_depend_on_body_key_order(
    body: dict[str, Any], reordered: dict[str, Any]
) -> None:
    """Bodies with the same content in a different key order share one key."""
    assert request_key(_request(body)) == request_key(_request(reordered))
    assert request_key(_request(body)) != request_key(_request({**body, "extra": 1}))


def test_key_does_not_depend_on_the_idempotency_key() -> None:
    """Two records asking the same question share one key (and so one answer)."""
    first = _request(idempotency_key="rec-1:email_deliverable")
    second = _request(idempotency_key="rec-2:email_deliverable")

    assert request_key(first) == request_key(second)


@pytest.mark.parametrize(
    "other",
    [
        _request(method="GET"),
        _request(path="/v1/vat/verify"),
        _request({"email": "bob@example.com"}),
        _request({"email": "alice@example.com", "strict": True}),
        _request({"email": ["alice@example.com"]}),
    ],
    ids=["method", "path", "body-value", "body-extra-field", "body-type"],
)
def test_key_differs_by_method_path_and_body(other: UpstreamRequest) -> None:
    """A different method, path or body gives a different key."""
    assert request_key(other) != request_key(_request())


@pytest.mark.parametrize(
    ("elapsed_s", "hit"), [(0.0, True), (9.99, True), (10.0, False), (500.0, False)]
)
def test_entries_expire_after_ttl(elapsed_s: float, hit: bool) -> None:
    """An answer is served for ``ttl_s`` after it was stored, then dropped."""
    time = FakeTime()
    cache = ResponseCache(ttl_s=10.0, max_entries=10, clock=time.clock)
    cache.put("k", _answer("a"))
    time.advance(elapsed_s)

    found = cache.get("k")

    assert (found == _answer("a")) is hit
    assert len(cache) == (1 if hit else 0)


def test_storing_again_renews_the_ttl() -> None:
    """A second ``put`` of a key restarts its lifetime and replaces the answer."""
    time = FakeTime()
    cache = ResponseCache(ttl_s=10.0, max_entries=10, clock=time.clock)
    cache.put("k", _answer("old"))
    time.advance(8.0)
    cache.put("k", _answer("new"))
    time.advance(8.0)

    assert cache.get("k") == _answer("new")


@pytest.mark.parametrize(("read_first", "evicted"), [(True, "b"), (False, "a")])
def test_eviction_drops_the_least_recently_used_entry(read_first: bool, evicted: str) -> None:
    """At ``max_entries`` the entry used longest ago goes; a recently read one survives."""
    cache = ResponseCache(ttl_s=60.0, max_entries=2, clock=FakeTime().clock)
    cache.put("a", _answer("a"))
    cache.put("b", _answer("b"))
    if read_first:
        assert cache.get("a") is not None

    cache.put("c", _answer("c"))

    assert len(cache) == 2
    assert cache.get(evicted) is None
    survivors = {"a", "b", "c"} - {evicted}
    assert all(cache.get(key) == _answer(key) for key in survivors)


def test_size_never_exceeds_max_entries() -> None:
    """However many answers are stored, only the newest ``max_entries`` are kept."""
    cache = ResponseCache(ttl_s=60.0, max_entries=3, clock=FakeTime().clock)

    for n in range(10):
        cache.put(str(n), _answer(str(n)))

    assert len(cache) == 3
    assert [cache.get(str(n)) is not None for n in range(10)] == [False] * 7 + [True] * 3


def test_zero_ttl_turns_the_cache_off() -> None:
    """With ``ttl_s=0`` nothing is stored and nothing is found."""
    cache = ResponseCache(ttl_s=0.0, max_entries=10, clock=FakeTime().clock)

    cache.put("k", _answer("a"))

    assert cache.get("k") is None
    assert len(cache) == 0
