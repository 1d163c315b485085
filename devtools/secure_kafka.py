"""A secured local broker for the security tests: certificates made with ``openssl``, SCRAM
users added at format time, TLS and SASL listeners beside the plaintext one.

Opt-in (:func:`secured_broker`); :class:`~devtools.local_kafka.LocalKafka` stays plaintext for
everything else. Listeners, all on 127.0.0.1:

- ``PLAINTEXT``: test setup (topics, seeding) and the readiness probe, as in plaintext mode;
- ``SASL_SSL``: SCRAM-SHA-512, SCRAM-SHA-256, PLAIN and OAUTHBEARER (the broker's unsecured
  JWT validator: any well-formed unsigned token, fine for tests);
- ``SSL``: mTLS (``ssl.client.auth=required``);
- ``MISMATCH``: TLS with a certificate for ``elsewhere.invalid`` (the hostname-mismatch test).

The controller listener stays plaintext. Keystores are PEM files (no keytool): the broker key
is encrypted PKCS#8, as Kafka's PEM keystore requires a key password.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.local_kafka import LocalKafka, LocalKafkaError, free_port

OPENSSL_TIMEOUT_S = 60.0
USER = "alice"
PASSWORD = "alice-scram-Secret-7f3a"
PLAIN_PASSWORD = "alice-plain-Secret-91c2"
KEY_PASSWORD = "broker-key-pass"


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise LocalKafkaError("openssl is not on PATH (apt-get install -y openssl)")
    done = subprocess.run(
        [openssl, *args], cwd=cwd, capture_output=True, text=True,
        timeout=OPENSSL_TIMEOUT_S, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise LocalKafkaError(f"openssl {args[0]} failed: {done.stderr.strip()}")


@dataclass(frozen=True)
class Certs:
    """The PEM files of one test PKI (paths under one directory)."""

    root: Path

    def __getattr__(self, name: str) -> Path:  # ca_crt -> ca.crt, client_key -> client.key
        stem, _, ext = name.rpartition("_")
        return self.root / f"{stem}.{ext}"


def _ca(name: str, cwd: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=cwd)  # fmt: skip


def _signed(name: str, san: str, ca: str, cwd: Path) -> None:
    """A key and a certificate for ``name`` with subjectAltName ``san``, signed by ``ca``."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
             "-out", f"{name}.crt", cwd=cwd)  # fmt: skip


def _pem_keystore(name: str, cwd: Path) -> None:
    """``<name>.pem``: the encrypted PKCS#8 key, then the certificate (Kafka's PEM keystore)."""
    _openssl("pkcs8", "-topk8", "-v1", "PBE-SHA1-3DES", "-in", f"{name}.key",
             "-passout", f"pass:{KEY_PASSWORD}", "-out", f"{name}.p8", cwd=cwd)  # fmt: skip
    (cwd / f"{name}.pem").write_text(
        (cwd / f"{name}.p8").read_text() + (cwd / f"{name}.crt").read_text()
    )


def make_certs(root: Path) -> Certs:
    """The test PKI: a CA, the broker (IP:127.0.0.1, DNS:localhost), a client (mTLS), a
    broker certificate for another name, and a second CA nobody trusts."""
    root.mkdir(parents=True, exist_ok=True)
    _ca("ca", root)
    _ca("rogue", root)
    _signed("broker", "IP:127.0.0.1,DNS:localhost", "ca", root)
    _signed("mismatch", "DNS:elsewhere.invalid", "ca", root)
    _signed("client", "DNS:client", "ca", root)
    _pem_keystore("broker", root)
    _pem_keystore("mismatch", root)
    return Certs(root)


def unsecured_jwt(subject: str = USER, lifetime_s: int = 3600) -> str:
    """A token the broker's unsecured validator accepts (``alg: none``, no signature)."""

    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    now = int(time.time())
    return f"{part({'alg': 'none'})}.{part({'sub': subject, 'iat': now, 'exp': now + lifetime_s})}."


@dataclass
class SecuredBroker:
    """A :class:`LocalKafka` with the secured listeners, and where a client reaches each."""

    kafka: LocalKafka
    certs: Certs
    sasl_ssl: str
    mtls: str
    mismatch: str

    def stop(self) -> None:
        self.kafka.stop()


def secured_broker(data_root: Path) -> SecuredBroker:
    """Make the certificates and configure (not start) a broker with the secured listeners."""
    certs = make_certs(data_root / "certs")
    port, controller = free_port(), free_port()
    sasl_port, ssl_port, mismatch_port = free_port(), free_port(), free_port()
    listeners = {"PLAINTEXT": port, "SASL_SSL": sasl_port, "SSL": ssl_port,
                 "MISMATCH": mismatch_port}  # fmt: skip
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_{USER}="{PLAIN_PASSWORD}";'
    )
    oauth = (
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        'unsecuredLoginStringClaim_sub="broker";'
    )
    props = {
        "listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in listeners.items())
        + f",CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in listeners.items()),
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
        "SASL_SSL:SASL_SSL,SSL:SSL,MISMATCH:SSL",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.broker_pem),
        "ssl.key.password": KEY_PASSWORD,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca_crt),
        "listener.name.ssl.ssl.client.auth": "required",
        "listener.name.mismatch.ssl.keystore.type": "PEM",
        "listener.name.mismatch.ssl.keystore.location": str(certs.mismatch_pem),
        "listener.name.mismatch.ssl.key.password": KEY_PASSWORD,
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN,"
        "OAUTHBEARER",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
        "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": plain,
        "listener.name.sasl_ssl.oauthbearer.sasl.jaas.config": oauth,
    }
    format_args = tuple(
        arg
        for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256")
        for arg in ("--add-scram", f"{mechanism}=[name={USER},password={PASSWORD}]")
    )
    kafka = LocalKafka(data_root, port=port, controller_port=controller,
                       extra_properties=props, format_args=format_args)  # fmt: skip
    return SecuredBroker(
        kafka=kafka,
        certs=certs,
        sasl_ssl=f"127.0.0.1:{sasl_port}",
        mtls=f"127.0.0.1:{ssl_port}",
        mismatch=f"127.0.0.1:{mismatch_port}",
    )
