"""Kafka credentials from ``kafka.security``: the TLS context, OAUTHBEARER tokens, and why a
secured start failed.

Knows nothing of aiokafka (:mod:`processor.kafka` adapts these to it):

- :func:`ssl_context`: CA file, client certificate and key (mTLS), hostname verification;
- :class:`FileToken`: a token in a file, re-read when its mtime changes;
- :class:`ClientCredentialsToken`: a token from an OAuth 2 client-credentials endpoint,
  cached until ``refresh_margin_s`` before it expires;
- :func:`diagnose`: aiokafka reports a wrong password and an untrusted CA as the same
  connection error, so we try the TLS handshake ourselves and say which it is.

Secrets stay in :class:`pydantic.SecretStr` until the moment a client needs them and never
enter a message.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from processor.config import KafkaSecurity, KafkaTls, OAuthClientCredentials
from processor.errors import ConfigError

HANDSHAKE_TIMEOUT_S = 5.0
#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH.
_NAME_MISMATCH = (62, 64)


def ssl_context(tls: KafkaTls | None) -> ssl.SSLContext:
    """The client TLS context: system CAs unless ``ca_file``, mTLS when a certificate is given."""
    tls = tls or KafkaTls()
    try:
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
        context.check_hostname = tls.check_hostname
        if tls.cert_file is not None and tls.key_file is not None:
            password = tls.key_password.read().get_secret_value() if tls.key_password else None
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file), password=password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"kafka.security.tls: cannot load certificates: {exc}") from None
    return context


class FileToken:
    """An OAUTHBEARER token kept in a file by someone else (a sidecar, a mounted secret)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime_ns: int | None = None
        self._token = ""

    def _read(self) -> str:
        mtime_ns = os.stat(self._path).st_mtime_ns
        if mtime_ns != self._mtime_ns:
            self._token = self._path.read_text(encoding="utf-8").strip()
            self._mtime_ns = mtime_ns
        return self._token

    async def token(self) -> str:
        try:
            token = await asyncio.to_thread(self._read)
        except OSError as exc:
            raise ConfigError(f"cannot read token file {self._path}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"token file {self._path} is empty")
        return token


class ClientCredentialsToken:
    """A token from the client-credentials grant, fetched again shortly before it expires."""

    def __init__(
        self, config: OAuthClientCredentials, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._monotonic = monotonic
        self._token = ""
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if not self._token or self._monotonic() >= self._renew_at:
                self._token, lifetime_s = await self._fetch()
                margin_s = min(self._config.refresh_margin_s, lifetime_s / 2)
                self._renew_at = self._monotonic() + lifetime_s - margin_s
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        config = self._config
        form = {"grant_type": "client_credentials", "client_id": config.client_id,
                "client_secret": config.client_secret.read().get_secret_value()}  # fmt: skip
        if config.scope:
            form["scope"] = config.scope
        timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        url = str(config.token_url)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, data=form) as response,
            ):
                if response.status != 200:
                    raise ConfigError(f"token endpoint {url} answered {response.status}")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"token endpoint {url}: {type(exc).__name__}") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ConfigError(f"token endpoint {url} sent no access_token")
        expires_in = body.get("expires_in", 3600)
        return token, float(expires_in) if isinstance(expires_in, int | float) else 3600.0


TokenSource = FileToken | ClientCredentialsToken


async def diagnose(security: KafkaSecurity, bootstrap_servers: str) -> str | None:
    """Why a secured client could not start, when we can tell (None: no better idea).

    Tries a TLS handshake with the clients' own context against the first bootstrap
    address: a refused certificate says untrusted CA or hostname mismatch; a handshake that
    works means the broker turned down the SASL credentials.
    """
    address = bootstrap_servers.split(",")[0].strip()
    host, _, port = address.rpartition(":")
    sasl = security.sasl
    who = (
        f"SASL authentication failed for user {sasl.username} (mechanism {sasl.mechanism}) "
        if sasl is not None and sasl.username
        else f"SASL authentication failed (mechanism {sasl.mechanism}) "
        if sasl
        else ""
    )
    if security.protocol not in ("SSL", "SASL_SSL"):
        return f"{who}at {address}".strip() if who else None
    try:
        context = ssl_context(security.tls)
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port), ssl=context),
            HANDSHAKE_TIMEOUT_S,
        )
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or str(exc)
        mismatch = exc.verify_code in _NAME_MISMATCH or "mismatch" in reason.lower()
        kind = "hostname mismatch" if mismatch else "untrusted CA"
        return f"TLS {kind} at {address}: {reason}"
    except ssl.SSLError as exc:
        return f"TLS handshake failed at {address}: {exc.reason or type(exc).__name__}"
    except (OSError, TimeoutError, ValueError, ConfigError):
        return None
    writer.close()
    if who:
        return f"{who}at {address}"
    if security.tls is None or security.tls.cert_file is None:
        return (
            f"TLS handshake with {address} worked, then the broker closed the connection: "
            "does it require a client certificate (mTLS: tls.cert_file, tls.key_file)?"
        )
    return f"TLS handshake with {address} worked, then the broker refused the client certificate"
