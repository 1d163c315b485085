"""``Idempotency-Key`` on POST: a retried request gets the first answer, not a second effect.

A POST with ``Idempotency-Key: K`` (1 to 255 visible ASCII characters) is remembered under
K and the caller's key name (two callers' keys never meet), with a fingerprint: the SHA-256
of the method, path, query and raw body. Then, for the same K:

- same fingerprint, first request finished: the stored response again (status, headers,
  body) with ``Idempotent-Replayed: true``; the route does not run;
- same fingerprint, first request still running: 409 ``idempotency.in_progress``
  (``Retry-After: 1``);
- another fingerprint: 422 ``idempotency.key_reused``, whether or not the first finished.

Responses under 500 are stored (a 4xx is the answer to that request, and a retry would get
it again anyway); a 5xx, a timeout or a dropped connection forgets the key, so a retry runs
afresh. Keys expire ``ttl_s`` after their first use (24 h by default). Memory is bounded by
``max_entries`` and ``max_stored_bytes``: past either, the oldest keys are forgotten first
(a key forgotten while its request runs loses only its 409 guard).

The store is in-process, right for one instance. Several replicas behind a balancer need a
shared store (Redis with ``SET NX`` and a TTL, say), or a retry that lands on another replica
runs again: a later step, behind the same :class:`IdempotencyStore` interface.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import Field
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processor.api import context
from processor.api.errors import ApiProblem, send_problem
from processor.config_base import Frozen

KEY_HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


class Idempotency(Frozen):
    """``api.protection.idempotency``."""

    enabled: bool = True
    ttl_s: float = Field(default=86_400.0, gt=0, description="a key is kept this long")
    max_entries: int = Field(default=10_000, ge=1)
    max_stored_bytes: int = Field(default=64 * 1024 * 1024, ge=0, description="stored responses")


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def size(self) -> int:
        return len(self.body) + sum(len(n) + len(v) for n, v in self.headers)


class _Entry:
    __slots__ = ("expires_at", "fingerprint", "response")

    def __init__(self, fingerprint: str, expires_at: float) -> None:
        self.fingerprint = fingerprint
        self.expires_at = expires_at
        self.response: StoredResponse | None = None  # None: the first request still runs


class Seen(enum.Enum):
    NEW = "new"  # the caller runs the request, then completes or releases the claim
    REPLAY = "replay"
    IN_PROGRESS = "in_progress"
    MISMATCH = "mismatch"


StoreKey = tuple[str, str]  # (caller's key name or "", Idempotency-Key)


@dataclass(frozen=True)
class Claim:
    seen: Seen
    response: StoredResponse | None = None
    entry: object = None  # NEW: the token complete() and release() take


class IdempotencyStore:
    """Keys, their fingerprints and stored responses; oldest first out."""

    def __init__(
        self,
        settings: Idempotency,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._entries: OrderedDict[StoreKey, _Entry] = OrderedDict()
        self._stored_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _forget_oldest(self) -> None:
        _, entry = self._entries.popitem(last=False)
        if entry.response is not None:
            self._stored_bytes -= entry.response.size()

    def _expire(self) -> None:
        now = self._clock()
        # insertion order is expiry order: every key lives ttl_s from its first use
        while self._entries and next(iter(self._entries.values())).expires_at <= now:
            self._forget_oldest()

    def claim(self, key: StoreKey, fingerprint: str) -> Claim:
        """What to do with a request under ``key`` (NEW claims it until completed/released)."""
        self._expire()
        entry = self._entries.get(key)
        if entry is not None:
            if entry.fingerprint != fingerprint:
                return Claim(Seen.MISMATCH)
            if entry.response is None:
                return Claim(Seen.IN_PROGRESS)
            return Claim(Seen.REPLAY, entry.response)
        entry = self._entries[key] = _Entry(fingerprint, self._clock() + self._settings.ttl_s)
        while len(self._entries) > self._settings.max_entries:
            self._forget_oldest()
        return Claim(Seen.NEW, entry=entry)

    def complete(self, key: StoreKey, claim: Claim, response: StoredResponse) -> None:
        """Store the response of a claimed request (unless its key was forgotten meanwhile)."""
        entry = self._entries.get(key)
        if entry is None or entry is not claim.entry:
            return
        entry.response = response
        self._stored_bytes += response.size()
        while self._stored_bytes > self._settings.max_stored_bytes and self._entries:
            self._forget_oldest()

    def release(self, key: StoreKey, claim: Claim) -> None:
        """Forget a claimed key whose request gave no answer worth keeping."""
        if self._entries.get(key) is claim.entry and claim.entry is not None:
            del self._entries[key]


def fingerprint(scope: Scope, body: bytes) -> str:
    """SHA-256 of the method, path, query and body: what "the same request" means."""
    head = f"{scope['method']} {scope['path']}?".encode() + scope.get("query_string", b"")
    return hashlib.sha256(head + b"\n" + body).hexdigest()


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all("!" <= c <= "~" for c in key)


class IdempotentPosts:
    """Replay, refuse or run (and remember) a POST that carries an ``Idempotency-Key``."""

    def __init__(self, app: ASGIApp, store: IdempotencyStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = Headers(scope=scope).get(KEY_HEADER) if scope["type"] == "http" else None
        if given is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if not _valid_key(given):
            message = f"{KEY_HEADER} is 1 to {MAX_KEY_LENGTH} visible ASCII characters"
            await send_problem(scope, receive, send,
                               ApiProblem(400, "idempotency.key_invalid", message))  # fmt: skip
            return
        key = (context.caller(scope) or "", given)
        claim = self.store.claim(key, fingerprint(scope, context.raw_body(scope)))
        if claim.seen is Seen.MISMATCH:
            message = f"this {KEY_HEADER} was used with another request body"
            problem = ApiProblem(422, "idempotency.key_reused", message)
        elif claim.seen is Seen.IN_PROGRESS:
            message = f"the first request with this {KEY_HEADER} has not finished; retry later"
            problem = ApiProblem(
                409, "idempotency.in_progress", message, headers={"Retry-After": "1"}
            )
        elif claim.seen is Seen.REPLAY:
            assert claim.response is not None
            await _replay(claim.response, send)
            return
        else:
            await self._run(scope, receive, send, key, claim)
            return
        await send_problem(scope, receive, send, problem)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, key: StoreKey, claim: Claim
    ) -> None:
        status, headers, chunks, done = 0, list[tuple[bytes, bytes]](), list[bytes](), False

        async def recording(message: Message) -> None:
            nonlocal status, headers, done
            if message["type"] == "http.response.start":
                status, headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                done = not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            if done and status < 500:
                self.store.complete(key, claim, StoredResponse(status, headers, b"".join(chunks)))
            else:
                self.store.release(key, claim)


async def _replay(response: StoredResponse, send: Send) -> None:
    headers = [*response.headers, (REPLAY_HEADER.lower().encode(), b"true")]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
