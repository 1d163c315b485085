"""What the upstream simulator saw: counters and a per-path request log, in bounded memory.

``SimulatorStats`` backs the simulator's ``GET /_stats`` and ``GET /_requests`` documents
(their shapes are in ``devtools.simulator``). Memory is bounded: the server
counts unknown paths under ``"other"``, ``by_second`` keeps the last 3,600 seconds per
path, at most 2,000,000 distinct ``Idempotency-Key`` values are kept (past that,
``idempotency_keys_capped`` turns true and the count is a lower bound), and the request
log keeps the latest ``log_per_path`` requests per path (50,000 by default).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping
from typing import Final, Literal

IDEMPOTENCY_KEYS_CAP: Final = 2_000_000
BY_SECOND_WINDOW_S: Final = 3_600
REQUEST_LOG_PER_PATH: Final = 50_000

Status = int | Literal["refused"]


@dataclasses.dataclass(slots=True)
class LoggedRequest:
    """One request in the log: its path, when it arrived, and its status once decided.

    Attributes:
        path: The endpoint path it was counted under.
        since_start_s: Monotonic seconds from the server's start to the request's arrival.
        status: The HTTP status, ``"refused"`` for a dropped connection, or None while in
            flight and for a request cancelled before it was answered.
    """

    path: str
    since_start_s: float
    status: Status | None = None


class SimulatorStats:
    """Counts what the simulated upstream saw and logs each request's arrival and status.

    Counter insertion order is time order (bar wall-clock steps back), which lets
    ``by_second`` evict its oldest seconds from the front. The log is in arrival order.
    """

    def __init__(self, log_per_path: int = REQUEST_LOG_PER_PATH) -> None:
        """Start with zeroed counters, an empty log and nothing in flight.

        Args:
            log_per_path: How many of the latest requests the log keeps per path.

        Raises:
            ValueError: ``log_per_path`` is below 1.
        """
        if log_per_path < 1:
            raise ValueError(f"log_per_path must be >= 1, not {log_per_path}")
        self._log_per_path = log_per_path
        self._in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero the counters and empty the log; requests in flight stay in ``in_flight``."""
        self._requests_total = 0
        self._max_in_flight = self._in_flight
        self._by_endpoint: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._idempotency_keys: set[str] = set()
        self._idempotency_keys_capped = False
        self._without_idempotency_key = 0
        self._authorized = 0
        self._traced = 0
        self._by_second: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self._first_request_at: float | None = None
        self._last_request_at: float | None = None
        self._last_429_at: dict[str, float] = {}
        self._log: dict[str, deque[LoggedRequest]] = {}

    def started(
        self, path: str, headers: Mapping[str, str], now_s: float, since_start_s: float
    ) -> LoggedRequest:
        """Count and log a request to ``path`` arriving now; pass the result to ``finished``.

        Args:
            path: The endpoint path to count it under.
            headers: The request's headers.
            now_s: Wall-clock epoch seconds, for ``by_second`` and the request times.
            since_start_s: Monotonic seconds since the server started, for the log.
        """
        self._requests_total += 1
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        key = headers.get("Idempotency-Key")
        if key is None:
            self._without_idempotency_key += 1
        elif len(self._idempotency_keys) < IDEMPOTENCY_KEYS_CAP:
            self._idempotency_keys.add(key)
        elif key not in self._idempotency_keys:
            self._idempotency_keys_capped = True
        if "Authorization" in headers or "X-Api-Key" in headers:
            self._authorized += 1
        if "traceparent" in headers:
            self._traced += 1
        if self._first_request_at is None:
            self._first_request_at = now_s
        self._last_request_at = now_s
        per_second, second = self._by_second[path], int(now_s)
        per_second[second] += 1
        while len(per_second) > BY_SECOND_WINDOW_S or next(iter(per_second)) <= (
            second - BY_SECOND_WINDOW_S
        ):
            del per_second[next(iter(per_second))]
        logged = LoggedRequest(path, since_start_s)
        if path not in self._log:
            self._log[path] = deque(maxlen=self._log_per_path)
        self._log[path].append(logged)
        return logged

    def finished(self, request: LoggedRequest, status: Status | None, now_s: float) -> None:
        """Count the end of a request: its status, ``"refused"``, or None (cancelled)."""
        self._in_flight -= 1
        request.status = status
        if status is None:
            return
        self._by_endpoint[request.path][str(status)] += 1
        if status == 429:
            self._last_429_at[request.path] = now_s

    def to_json(self) -> dict[str, object]:
        """Return the ``GET /_stats`` document."""
        return {
            "requests_total": self._requests_total,
            "by_endpoint": {path: dict(counts) for path, counts in self._by_endpoint.items()},
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
            "idempotency_keys_distinct": len(self._idempotency_keys),
            "idempotency_keys_capped": self._idempotency_keys_capped,
            "requests_without_idempotency_key": self._without_idempotency_key,
            "authorized_requests": self._authorized,
            "traced_requests": self._traced,
            "by_second": {
                path: {str(second): n for second, n in per_second.items()}
                for path, per_second in self._by_second.items()
            },
            "first_request_at": self._first_request_at,
            "last_request_at": self._last_request_at,
            "last_429_at": dict(self._last_429_at),
        }

    def requests_json(self, path: str | None = None) -> dict[str, object]:
        """Return the ``GET /_requests`` document, for one path or (None) for all of them."""
        if path is not None:
            return {"path": path, "requests": _pairs(self._log.get(path, ()))}
        return {"by_path": {logged: _pairs(log) for logged, log in self._log.items()}}


def _pairs(log: Iterable[LoggedRequest]) -> list[list[object]]:
    return [[request.since_start_s, request.status] for request in log]
