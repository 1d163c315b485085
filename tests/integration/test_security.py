"""The processor against a secured broker (devtools.secure_kafka): SASL_SSL with SCRAM and
OAUTHBEARER (token file, client credentials), mTLS; a wrong password, an untrusted CA and a
hostname mismatch each end in one clear line and exit 1; no secret ever shows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devtools.secure_kafka import PASSWORD, USER, SecuredBroker, secured_broker, unsecured_jwt
from devtools.stack import config_data, save_config
from processor.config import load_settings
from processor.kafka import ensure_topics
from tests.support.cli_process import cli_processes
from tests.support.http_app import serve
from tests.support.setup import create_topics, running_app, unique_topics
from tests.support.waiting import wait_until

TIMEOUT_S = 60.0
UNUSED_UPSTREAM = "http://127.0.0.1:9"  # undecodable records never reach an upstream
CLIENT_SECRET = "client-Secret-b81d"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """One secured broker for the module."""
    secured = secured_broker(tmp_path_factory.mktemp("secure-kafka"))
    secured.kafka.start()
    try:
        yield secured
    finally:
        secured.stop()


@contextlib.asynccontextmanager
async def token_endpoint(issued: list[str]) -> AsyncIterator[str]:
    """An OAuth client-credentials endpoint on 127.0.0.1 that checks the client's secret."""

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_secret") != CLIENT_SECRET:
            return web.json_response({"error": "invalid_client"}, status=401)
        issued.append(unsecured_jwt())
        return web.json_response({"access_token": issued[-1], "expires_in": 3600})

    app = web.Application()
    app.router.add_post("/token", token)
    async with serve(app) as base:
        yield f"{base}/token"


def _security(broker: SecuredBroker, tmp: Path, kind: str) -> tuple[str, dict[str, Any]]:
    """(bootstrap, kafka.security) for one way in; secrets go to files under ``tmp``."""
    (tmp / "password").write_text(PASSWORD)
    (tmp / "wrong").write_text("not-the-password")
    (tmp / "token").write_text(unsecured_jwt())
    (tmp / "client-secret").write_text(CLIENT_SECRET)
    ca = str(broker.certs.ca_crt)
    scram = {"mechanism": "SCRAM-SHA-512", "username": USER,
             "password": {"file": str(tmp / "password")}}  # fmt: skip
    ways: dict[str, tuple[str, dict[str, Any]]] = {
        "scram": (broker.sasl_ssl, {"protocol": "SASL_SSL", "tls": {"ca_file": ca},
                                    "sasl": scram}),
        "oauth-file": (broker.sasl_ssl, {"protocol": "SASL_SSL", "tls": {"ca_file": ca},
                                         "sasl": {"mechanism": "OAUTHBEARER",
                                                  "token_file": str(tmp / "token")}}),
        "mtls": (broker.mtls, {"protocol": "SSL", "tls": {
            "ca_file": ca, "cert_file": str(broker.certs.client_crt),
            "key_file": str(broker.certs.client_key)}}),
        "wrong-password": (broker.sasl_ssl, {"protocol": "SASL_SSL", "tls": {"ca_file": ca},
                                             "sasl": {**scram, "password": {
                                                 "file": str(tmp / "wrong")}}}),
        "untrusted-ca": (broker.sasl_ssl, {"protocol": "SASL_SSL", "tls": {
            "ca_file": str(broker.certs.rogue_crt)}, "sasl": scram}),
        "hostname-mismatch": (broker.mismatch, {"protocol": "SSL", "tls": {"ca_file": ca}}),
    }  # fmt: skip
    return ways[kind]


async def _config(
    broker: SecuredBroker, tmp: Path, kind: str, sasl: dict[str, Any] | None = None
) -> Path:
    """A processor config over ``kind``, its topics created through the plaintext listener."""
    topics = unique_topics(f"sec-{kind}")
    await create_topics(broker.kafka.bootstrap_servers, topics, partitions=1)
    bootstrap, section = _security(broker, tmp, kind)
    data = config_data(bootstrap, UNUSED_UPSTREAM, topics)
    data["kafka"]["security"] = {**section, **({"sasl": sasl} if sasl else {})}
    data["kafka"]["request_timeout_ms"] = 5_000
    return save_config(tmp / f"{kind}.yaml", data)


async def _dead_letters(broker: SecuredBroker, config: Path, count: int) -> None:
    """Send ``count`` undecodable records in (plaintext) and wait for their dead letters."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topics = load_settings(config).kafka.topics
    plain = broker.kafka.bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=plain)
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(topics.input, b"not json %d" % i)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topics.dead_letter, bootstrap_servers=plain,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    seen = 0
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while seen < count:
                batches = await consumer.getmany(timeout_ms=500)
                seen += sum(len(b) for b in batches.values())
    finally:
        await consumer.stop()
    assert seen == count


@pytest.mark.parametrize("kind", ["scram", "oauth-file", "mtls"])
async def test_the_processor_consumes_and_publishes_over_each_secured_listener(
    broker: SecuredBroker, tmp_path: Path, kind: str
) -> None:
    """Over SCRAM-SHA-512, OAUTHBEARER from a token file and mTLS, records come in and
    their outcomes go out through the secured listener."""
    config = await _config(broker, tmp_path, kind)
    async with running_app(load_settings(config)):
        await _dead_letters(broker, config, 3)


async def test_oauthbearer_client_credentials_fetches_a_token_and_runs(
    broker: SecuredBroker, tmp_path: Path
) -> None:
    """OAUTHBEARER with a client-credentials endpoint: the processor gets a token with its
    client secret (from a file) and works with it."""
    issued: list[str] = []
    async with token_endpoint(issued) as url:
        credentials = {"token_url": url, "client_id": "processor",
                       "client_secret": {"file": str(tmp_path / "client-secret")}}  # fmt: skip
        sasl = {"mechanism": "OAUTHBEARER", "client_credentials": credentials}
        config = await _config(broker, tmp_path, "oauth-file", sasl=sasl)
        async with running_app(load_settings(config)):
            await _dead_letters(broker, config, 2)
    assert issued


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("wrong-password", f"SASL authentication failed for user {USER} (mechanism SCRAM-SHA-512)"),
        ("untrusted-ca", "TLS untrusted CA at "),
        ("hostname-mismatch", "TLS hostname mismatch at "),
    ],
)
async def test_a_refused_start_says_why_in_one_line_and_exits_1(
    broker: SecuredBroker, tmp_path: Path, kind: str, says: str
) -> None:
    """A wrong password, an untrusted CA and a hostname mismatch each end the process with
    exit 1 and one line naming the cause and the broker address, without the secret."""
    config = await _config(broker, tmp_path, kind)
    bootstrap = load_settings(config).kafka.bootstrap_servers
    async with cli_processes() as cli:
        proc = await cli.start(config, tmp_path / "run.log")
        assert await asyncio.wait_for(proc.proc.wait(), TIMEOUT_S) == 1
    lines = [line for line in proc.log.read_text().splitlines() if line.startswith("processor:")]
    assert len(lines) == 1, proc.tail()
    assert says in lines[0]
    assert bootstrap in lines[0]
    assert "not-the-password" not in proc.log.read_text()


async def test_no_secret_shows_in_logs_check_config_status_or_metrics(
    broker: SecuredBroker, tmp_path: Path
) -> None:
    """A full SCRAM run at debug level: the password appears nowhere in its log, in
    check-config's output, in /status or in /metrics."""
    config = await _config(broker, tmp_path, "scram")
    config.write_text(config.read_text().replace("level: info", "level: debug"))
    check = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processor.cli", "check-config", "--config", str(config),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    shown = (await asyncio.wait_for(check.communicate(), TIMEOUT_S))[0].decode()
    assert check.returncode == 0
    assert "security" in shown
    async with cli_processes() as cli:
        proc = await cli.start(config, tmp_path / "run.log")
        await wait_until(lambda: bool(proc.events("processor.started")), TIMEOUT_S, "start")
        http = proc.events("processor.started")[0]["http"]
        await _dead_letters(broker, config, 2)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            pages = [await (await session.get(f"{http}{p}")).text()
                     for p in ("/status", "/metrics", "/readyz")]  # fmt: skip
        assert await proc.stop() == 0
    for where, text in [("log", proc.log.read_text()), ("check-config", shown),
                        *zip(("/status", "/metrics", "/readyz"), pages, strict=True)]:  # fmt: skip
        assert PASSWORD not in text, where
    assert json.loads(pages[0])  # /status answered a real document


async def test_topics_create_goes_through_the_secured_listener(
    broker: SecuredBroker, tmp_path: Path
) -> None:
    """The admin client takes the same security settings (SCRAM over TLS)."""
    config = load_settings(await _config(broker, tmp_path, "scram"))
    await ensure_topics(
        config.kafka.bootstrap_servers, ["sec-admin-made"], 1, security=config.kafka.security
    )
