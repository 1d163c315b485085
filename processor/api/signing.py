"""Optional HMAC request signing: proof that the body is the one the client signed, recently.

The client sends ``X-Signature-Timestamp: T`` (Unix seconds, an integer) and
``X-Signature: HEX``, where HEX is the lowercase hex HMAC-SHA256, keyed with the shared
signing secret, of exactly these bytes::

    T "." BODY        (the timestamp's ASCII digits, one full stop, the raw body as sent)

With a shell: ``printf '%s.%s' "$T" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -r``.
A request is refused when either header is missing, the signature is not 64 hex digits or is
wrong (compared with :func:`hmac.compare_digest`), or T is more than ``max_skew_s`` away
from the server's clock: a captured request cannot be replayed later than that (within the
window, an ``Idempotency-Key`` makes a replay harmless). Method and path are not signed, as
the scheme asks (Stripe's and Slack's webhooks sign the same string).

Every failure is 401 ``auth.signature_invalid`` with one message, not 403: the request's
origin is not proven (403 would say "known, but not allowed"), and one answer for every
reason tells a forger nothing. The secret is one per service (API keys are stored only as
hashes, so they cannot key an HMAC); it comes from a file or the environment, never the YAML.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable

from pydantic import Field, model_validator
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from processor.api import context
from processor.api.errors import ApiProblem, send_problem
from processor.config_base import Frozen, invalid
from processor.config_security import Secret

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_SECONDS = re.compile(r"[0-9]{1,12}")


class RequestSigning(Frozen):
    """``api.protection.signing``: HMAC-SHA256 over the timestamp and the raw body."""

    enabled: bool = False
    secret: Secret | None = Field(default=None, description="{file: PATH} or {env: NAME}")
    max_skew_s: float = Field(
        default=300.0, gt=0, description="how far X-Signature-Timestamp may be from our clock"
    )

    @model_validator(mode="after")
    def _secret_when_enabled(self) -> RequestSigning:
        if self.enabled and self.secret is None:
            raise invalid("RequestSigning", [(("secret",), "enabled needs secret")])
        return self


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature of ``body`` sent at ``timestamp`` (what the client computes)."""
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


class SignatureCheck:
    """Verifies one request's signature against one secret and the wall clock."""

    def __init__(
        self, secret: bytes, max_skew_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secret
        self.max_skew_s = max_skew_s
        self._clock = clock

    def verify(self, timestamp: str | None, signature: str | None, body: bytes) -> bool:
        """True when ``signature`` signs ``body`` at ``timestamp`` and that is recent."""
        if timestamp is None or signature is None:
            return False
        if not _SECONDS.fullmatch(timestamp) or not _HEX.fullmatch(signature):
            return False
        if abs(self._clock() - int(timestamp)) > self.max_skew_s:
            return False
        expected = sign(self._secret, timestamp, body)
        return hmac.compare_digest(expected, signature.lower())


def load_check(settings: RequestSigning) -> SignatureCheck | None:
    """The check the settings ask for (None: signing off); ConfigError if the secret is unset."""
    if not settings.enabled or settings.secret is None:
        return None
    secret = settings.secret.read().get_secret_value().encode("utf-8")
    return SignatureCheck(secret, settings.max_skew_s)


class SignedRequests:
    """Refuse (401) a request whose signature does not verify; open paths pass."""

    def __init__(self, app: ASGIApp, check: SignatureCheck, open_paths: frozenset[str]) -> None:
        self.app = app
        self.check = check
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
        if not self.check.verify(timestamp, signature, context.raw_body(scope)):
            message = (
                f"{SIGNATURE_HEADER} must be the HMAC-SHA256 of '{TIMESTAMP_HEADER}.body' "
                f"with a timestamp within {self.check.max_skew_s:g} s"
            )
            await send_problem(scope, receive, send, ApiProblem(401, "auth.signature_invalid",
                                                                message))  # fmt: skip
            return
        await self.app(scope, receive, send)
