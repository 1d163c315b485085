"""Answers kept for a while, and identical calls in flight shared.

Keyed by what is asked (upstream, method, path, query, canonical JSON body), not by record: a
duplicate record, or another record with the same e-mail, gets the same answer without a
second call. Only 2xx answers are kept. The cache is an LRU bounded by ``max_entries``,
each entry living ``ttl_s``.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlencode

import orjson

from processor.upstream.client import UpstreamRequest, UpstreamResponse

#: The standard library's canonical JSON, for what orjson refuses (integers past 64 bits).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _canonical(body: object) -> str:
    """The body as canonical JSON (keys sorted at every level): orjson, about 10 us a key
    less than the standard library's encoder on the bench machine (docs/benchmarks.md)."""
    try:
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        return _CANONICAL.encode(body)


def request_key(request: UpstreamRequest) -> str:
    """What identifies a request's answer: method, path, query and the canonical body."""
    body = _canonical(request.json_body)
    query = urlencode(request.query) if request.query else ""
    return f"{request.method} {request.path}?{query} {body}"


class ResponseCache:
    """A TTL + LRU map from request key to a 2xx answer."""

    def __init__(
        self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, UpstreamResponse]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> UpstreamResponse | None:
        if not self._ttl_s:
            return None
        hit = self._entries.get(key)
        if hit is None:
            return None
        expires, response = hit
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return response

    def put(self, key: str, response: UpstreamResponse) -> None:
        if not self._ttl_s:
            return
        self._entries[key] = (self._clock() + self._ttl_s, response)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
