"""``kafka.security``: TLS (CA, mTLS, hostname check) and SASL (PLAIN, SCRAM, OAUTHBEARER from
a token file or client credentials); secrets from files or the environment, never inline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    model_validator,
)

from processor.config_base import Frozen, Problem, invalid
from processor.errors import ConfigError


class _Secret(Frozen):
    """Where a secret comes from: a file (its content, stripped) or an environment variable.
    Never inline in YAML, so a config file can be shown and committed without leaking."""

    file: Path | None = None
    env: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError("secrets are not written inline: use {file: PATH} or {env: NAME}")
        return data

    @model_validator(mode="after")
    def _one_source(self) -> _Secret:
        if (self.file is None) == (self.env is None):
            raise invalid("Secret", [((), "give exactly one of file or env")])
        return self

    def read(self) -> SecretStr:
        """The secret now (read at client start-up; raises ConfigError when missing)."""
        if self.file is not None:
            try:
                return SecretStr(self.file.read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {self.file}: {exc.strerror}") from exc
        assert self.env is not None
        value = os.environ.get(self.env)
        if not value:
            raise ConfigError(f"environment variable {self.env} (a secret) is not set")
        return SecretStr(value)


#: Its public name: the API reads its key hashes and signing secret through it too.
Secret = _Secret


class KafkaTls(Frozen):
    """TLS towards the brokers (protocols SSL and SASL_SSL); mTLS with cert_file + key_file."""

    ca_file: Path | None = Field(default=None, description="PEM CA bundle; none: system CAs")
    cert_file: Path | None = Field(default=None, description="client certificate (mTLS)")
    key_file: Path | None = Field(default=None, description="client private key (mTLS)")
    key_password: _Secret | None = None
    check_hostname: bool = Field(default=True, description="false only for test clusters")

    @model_validator(mode="after")
    def _pair(self) -> KafkaTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise invalid("KafkaTls", [((), "mTLS needs both cert_file and key_file")])
        if self.key_password is not None and self.key_file is None:
            raise invalid("KafkaTls", [(("key_password",), "given without key_file")])
        return self


class OAuthClientCredentials(Frozen):
    """An OAuth 2 client-credentials token endpoint (RFC 6749 section 4.4)."""

    token_url: AnyHttpUrl
    client_id: str
    client_secret: _Secret
    scope: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    refresh_margin_s: float = Field(default=60.0, ge=0, description="renew this long before expiry")


class KafkaSasl(Frozen):
    """SASL (protocols SASL_PLAINTEXT and SASL_SSL). PLAIN and SCRAM take username and
    password; OAUTHBEARER takes token (a file re-read when it changes) or client_credentials."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
    username: str | None = None
    password: _Secret | None = None
    token_file: Path | None = None
    client_credentials: OAuthClientCredentials | None = None

    @model_validator(mode="after")
    def _credentials(self) -> KafkaSasl:
        if self.mechanism == "OAUTHBEARER":
            if (self.token_file is None) == (self.client_credentials is None):
                need = "OAUTHBEARER needs exactly one of token_file or client_credentials"
                raise invalid("KafkaSasl", [((), need)])
            if self.username is not None or self.password is not None:
                raise invalid("KafkaSasl", [((), "OAUTHBEARER takes no username/password")])
        elif self.username is None or self.password is None:
            raise invalid("KafkaSasl", [((), f"{self.mechanism} needs username and password")])
        return self


class KafkaSecurity(Frozen):
    """How the clients authenticate and encrypt (the standard Kafka client protocols)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    tls: KafkaTls | None = None
    sasl: KafkaSasl | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        problems: list[Problem] = []
        uses_tls = self.protocol in ("SSL", "SASL_SSL")
        uses_sasl = self.protocol.startswith("SASL_")
        if uses_sasl and self.sasl is None:
            problems.append((("sasl",), f"protocol {self.protocol} needs sasl.mechanism"))
        if not uses_sasl and self.sasl is not None:
            problems.append((("sasl",), f"given but protocol {self.protocol} uses no SASL"))
        if not uses_tls and self.tls is not None:
            problems.append((("tls",), f"given but protocol {self.protocol} uses no TLS"))
        if problems:
            raise invalid("KafkaSecurity", problems)
        return self
