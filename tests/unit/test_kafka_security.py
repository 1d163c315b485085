"""kafka.security: validation at load, secrets from files and env only, the aiokafka kwargs,
and the OAUTHBEARER token sources (file re-read on change, client credentials cached)."""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from processor.config import KafkaSecurity, OAuthClientCredentials, load_settings
from processor.errors import ConfigError
from processor.kafka.security import security_kwargs
from processor.kafka_auth import ClientCredentialsToken, FileToken, diagnose
from tests.support.http_app import serve

SECRET = "s3cret-value-x9"


def _plain(password: object) -> dict[str, Any]:
    """SASL_PLAINTEXT with PLAIN for user u, the password from ``password``."""
    sasl = {"mechanism": "PLAIN", "username": "u", "password": password}
    return {"protocol": "SASL_PLAINTEXT", "sasl": sasl}


def _load(tmp_path: Path, security: dict[str, Any]) -> KafkaSecurity:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"security": security}}))
    return load_settings(path).kafka.security


@pytest.mark.parametrize(
    ("security", "says"),
    [
        ({"protocol": "SASL_SSL"}, "kafka.security.sasl: protocol SASL_SSL needs sasl.mechanism"),
        ({"protocol": "SSL", "tls": {"cert_file": "c.pem"}}, "needs both cert_file and key_file"),
        ({"protocol": "PLAINTEXT", "tls": {}}, "protocol PLAINTEXT uses no TLS"),
        ({"protocol": "SASL_SSL", "sasl": {"mechanism": "SCRAM-SHA-512", "username": "u"}},
         "SCRAM-SHA-512 needs username and password"),
        ({"protocol": "SASL_SSL", "sasl": {"mechanism": "OAUTHBEARER"}},
         "needs exactly one of token_file or client_credentials"),
        (_plain("inline"), "use {file: PATH} or {env: NAME}"),
        (_plain({"file": "a", "env": "B"}), "give exactly one of file or env"),
    ],
)  # fmt: skip
def test_inconsistent_security_is_refused_at_load_naming_the_problem(
    tmp_path: Path, security: dict[str, Any], says: str
) -> None:
    """Each inconsistent section (and an inline password) is a ConfigError saying what."""
    with pytest.raises(ConfigError, match=r"kafka\.security") as caught:
        _load(tmp_path, security)
    assert says in str(caught.value)


def test_scram_kwargs_read_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SCRAM over SASL_SSL gives aiokafka a TLS context and the plain username/password."""
    monkeypatch.setenv("KAFKA_PW", SECRET)
    security = _load(
        tmp_path,
        {
            "protocol": "SASL_SSL",
            "sasl": {
                "mechanism": "SCRAM-SHA-256",
                "username": "svc",
                "password": {"env": "KAFKA_PW"},
            },
        },
    )
    kwargs = security_kwargs(security)
    assert isinstance(kwargs.pop("ssl_context"), ssl.SSLContext)
    assert kwargs == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
                      "sasl_plain_username": "svc", "sasl_plain_password": SECRET}  # fmt: skip
    assert SECRET not in repr(security)


def test_a_missing_secret_is_a_config_error_naming_its_source(tmp_path: Path) -> None:
    """An unset environment variable or a missing file is named, the secret never."""
    security = _load(tmp_path, _plain({"env": "NO_SUCH_VAR_FOR_TEST"}))
    with pytest.raises(ConfigError, match="NO_SUCH_VAR_FOR_TEST"):
        security_kwargs(security)


def test_check_config_output_names_the_secret_source_not_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dumped settings show where the secret comes from, never its value."""
    monkeypatch.setenv("KAFKA_PW", SECRET)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"security": {"protocol": "SASL_SSL", "sasl": {
        "mechanism": "PLAIN", "username": "u", "password": {"env": "KAFKA_PW"}}}}}))  # fmt: skip
    dumped = yaml.safe_dump(load_settings(path).model_dump(mode="json"))
    assert "KAFKA_PW" in dumped
    assert SECRET not in dumped


async def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    """FileToken returns the new token once the file's mtime moves, the old one before."""
    path = tmp_path / "token"
    path.write_text("first\n")
    source = FileToken(path)
    assert await source.token() == "first"
    path.write_text("second")
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1_000_000))
    assert await source.token() == "second"


@pytest.fixture
async def token_server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A client-credentials endpoint on 127.0.0.1 recording each request's form."""
    forms: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        forms.append({k: str(v) for k, v in (await request.post()).items()})
        return web.json_response({"access_token": f"tok-{len(forms)}", "expires_in": 100})

    app = web.Application()
    app.router.add_post("/token", token)
    async with serve(app) as base:
        yield f"{base}/token", forms


async def test_client_credentials_are_cached_until_shortly_before_expiry(
    tmp_path: Path, token_server: tuple[str, list[dict[str, str]]]
) -> None:
    """One request while the token is fresh, a new one within refresh_margin_s of expiry."""
    url, forms = token_server
    (tmp_path / "secret").write_text(SECRET)
    config = OAuthClientCredentials.model_validate({
        "token_url": url, "client_id": "proc", "scope": "kafka", "refresh_margin_s": 10,
        "client_secret": {"file": str(tmp_path / "secret")}})  # fmt: skip
    now = [0.0]
    source = ClientCredentialsToken(config, monotonic=lambda: now[0])
    assert await source.token() == "tok-1"
    now[0] = 89.0
    assert await source.token() == "tok-1"
    now[0] = 91.0
    assert await source.token() == "tok-2"
    assert forms[0] == {"grant_type": "client_credentials", "client_id": "proc",
                        "client_secret": SECRET, "scope": "kafka"}  # fmt: skip


async def test_a_refusing_token_endpoint_is_an_error_without_the_secret(tmp_path: Path) -> None:
    """A token endpoint that cannot be reached is a ConfigError naming the URL only."""
    (tmp_path / "secret").write_text(SECRET)
    config = OAuthClientCredentials.model_validate({
        "token_url": "http://127.0.0.1:9/token", "client_id": "proc", "timeout_s": 2,
        "client_secret": {"file": str(tmp_path / "secret")}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1:9") as caught:
        await ClientCredentialsToken(config).token()
    assert SECRET not in str(caught.value)


async def test_diagnose_names_sasl_for_a_plaintext_sasl_listener(tmp_path: Path) -> None:
    """Without TLS there is no handshake to try: the SASL user and mechanism are named."""
    (tmp_path / "pw").write_text(SECRET)
    security = _load(tmp_path, _plain({"file": str(tmp_path / "pw")}))
    why = await diagnose(security, "127.0.0.1:9")
    assert why == "SASL authentication failed for user u (mechanism PLAIN) at 127.0.0.1:9"
