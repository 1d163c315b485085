"""Who is calling: API keys, stored as SHA-256 hashes.

A client sends its key as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``. The service
never holds the keys themselves: the config names a file or an environment variable
(``{file: PATH}`` or ``{env: NAME}``) holding the lowercase hex SHA-256 of each key, so the
config, the process environment and the logs can be shown without granting access. A key
is random and long (32 bytes from a CSPRNG, say), so one unsalted SHA-256 is enough: there is
no dictionary to guess from, and a slow password hash would cost every request.

Entries are ``NAME:HEX`` or ``HEX`` (named ``key-`` and the hash's first 8 digits), separated
by newlines or commas; ``#`` starts a comment. The name is the caller's identity in logs,
rate limits and idempotency; two hashes may share a name (a key and its successor while it
is rotated, sharing one rate-limit bucket). The presented key's hash is compared with every
entry with :func:`hmac.compare_digest`, without stopping at the first match.

Authentication is off by default (``enabled: false``): local use, tests and a service that
runs behind an authenticating gateway need no key. Turn it on wherever the API is reachable
by anyone else; a refused request gets 401 ``auth.key_missing`` or ``auth.key_invalid``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from pydantic import Field, model_validator
from starlette.datastructures import Headers

from processor.api.errors import ApiProblem
from processor.config_base import Frozen, invalid
from processor.config_security import Secret
from processor.errors import ConfigError

_ENTRY = re.compile(r"(?:(?P<name>[A-Za-z0-9._-]{1,64}):)?(?P<hash>[0-9a-f]{64})")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}


class ApiKeys(Frozen):
    """``api.protection.auth``: API keys (hashes only)."""

    enabled: bool = Field(default=False, description="off: no key asked (local use, a gateway)")
    key_hashes: Secret | None = Field(
        default=None,
        description="{file: PATH} or {env: NAME}: NAME:SHA256HEX or SHA256HEX entries, "
        "one a line or comma-separated",
    )

    @model_validator(mode="after")
    def _hashes_when_enabled(self) -> ApiKeys:
        if self.enabled and self.key_hashes is None:
            raise invalid("ApiKeys", [(("key_hashes",), "enabled needs key_hashes")])
        return self


def hash_key(key: str) -> str:
    """The hex SHA-256 of ``key`` (what the key file holds): ``printf %s KEY | sha256sum``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """The known key hashes and their names."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        self._entries = [(bytes.fromhex(digest), name) for digest, name in entries]

    @classmethod
    def parse(cls, text: str, source: str) -> KeyRing:
        """Entries from ``text``; ConfigError naming ``source`` and the entry's position
        (never its content: a plain key written there by mistake must not reach a log)."""
        entries: list[tuple[str, str]] = []
        tokens = (
            token.strip()
            for line in text.splitlines()
            for token in line.split("#", 1)[0].split(",")
        )
        for number, token in enumerate((t for t in tokens if t), start=1):
            match = _ENTRY.fullmatch(token)
            if match is None:
                raise ConfigError(
                    f"API key hashes from {source}: entry {number} is not NAME:SHA256HEX or "
                    "SHA256HEX (64 lowercase hex digits; hash a key with: printf %s KEY | "
                    "sha256sum)"
                )
            digest = match["hash"]
            if any(digest == known for known, _ in entries):
                raise ConfigError(f"API key hashes from {source}: entry {number} repeats a hash")
            entries.append((digest, match["name"] or f"key-{digest[:8]}"))
        if not entries:
            raise ConfigError(f"API key hashes from {source}: no entry")
        return cls(entries)

    def identify(self, key: str) -> str | None:
        """The name of ``key`` (None: not a known key), compared in constant time."""
        presented = hashlib.sha256(key.encode("utf-8")).digest()
        found = None
        for digest, name in self._entries:
            if hmac.compare_digest(presented, digest):
                found = name
        return found


def load_key_ring(settings: ApiKeys) -> KeyRing | None:
    """The key ring the settings name (None: authentication off); ConfigError if unreadable."""
    if not settings.enabled or settings.key_hashes is None:
        return None
    source = settings.key_hashes
    where = f"file {source.file}" if source.file is not None else f"environment {source.env}"
    return KeyRing.parse(source.read().get_secret_value(), where)


def presented_key(headers: Headers) -> str | None:
    """The key from ``X-API-Key``, else from ``Authorization: Bearer``."""
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def authenticate(ring: KeyRing, headers: Headers) -> str:
    """The caller's key name; an :class:`ApiProblem` (401) without a known key."""
    key = presented_key(headers)
    if key is None:
        raise ApiProblem(401, "auth.key_missing", "an API key is required (X-API-Key or "
                         "Authorization: Bearer)", headers=dict(_CHALLENGE))  # fmt: skip
    name = ring.identify(key)
    if name is None:
        raise ApiProblem(
            401, "auth.key_invalid", "the API key is not valid", headers=dict(_CHALLENGE)
        )
    return name
