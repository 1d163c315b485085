"""A real single-node Apache Kafka broker (KRaft) on 127.0.0.1, without Docker.

Owns the whole life of the development broker used by ``make run``, the tests and the
benchmarks:

1. :func:`ensure_jars` fetches the broker jars named by ``deploy/kafka/pom.xml`` from Maven
   Central into a cache that survives between runs (``~/.cache/record-processor``).
2. :class:`LocalKafka` writes ``server.properties``, formats the KRaft data directory unless
   it is formatted already (``--data-dir`` keeps data between runs),
   starts ``kafka.Kafka`` with ``java -cp 'libs/*'``, and waits until a real request (list
   topics) succeeds. :meth:`LocalKafka.stop` sends SIGTERM (controlled shutdown).
   :meth:`LocalKafka.restart` starts it again on the same data directory.

This is a developer tool: it blocks (subprocesses, sockets) and is never imported by the
service itself. Run it on its own with ``python -m devtools.local_kafka run``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]  # devtools runs from a source checkout
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "deploy" / "kafka" / "log4j2.properties"
#: A small broker on a small machine, sharing its cores with what it serves: the C1 compiler
#: only and the serial collector. Measured on 2 cores (start, then 30,000 records produced):
#: the broker's CPU to ready 11.8-12.3 s -> 7.1-7.5 s and while producing 4.5-5.2 s ->
#: 2.8-2.9 s, against C2 with G1, at the same produce time.
JVM_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
MAVEN_TIMEOUT_S = 900.0
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, formatted or started."""


def kafka_version(pom: Path = POM) -> str:
    """The broker version pinned in the pom (the one place it is set)."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if match is None:
        raise LocalKafkaError(f"no <kafka.version> in {pom}")
    return match.group(1).strip()


def cache_root() -> Path:
    """Where fetched jars live between runs (``$RECORD_PROCESSOR_CACHE`` overrides)."""
    override = os.environ.get("RECORD_PROCESSOR_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "record-processor"


def ensure_jars(pom: Path = POM) -> Path:
    """Return the directory of broker jars, fetching them with Maven on first use.

    The download goes to a temporary directory renamed into place only when complete,
    so an interrupted fetch never leaves a half-filled cache behind.
    """
    libs = cache_root() / f"kafka-{kafka_version(pom)}" / "libs"
    if (libs / ".complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError("Maven (mvn) is not on PATH; it fetches the Kafka broker jars")
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs.", dir=libs.parent))
    cmd = [
        mvn, "-q", "-B", "-f", str(pom),
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise LocalKafkaError(f"Maven did not finish within {MAVEN_TIMEOUT_S:.0f}s") from exc
    if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        raise LocalKafkaError(f"Maven failed to fetch the broker jars:\n{done.stdout}{done.stderr}")
    (staging / ".complete").write_text(kafka_version(pom))
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding, as KRaft wants."""
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


async def _list_topics(bootstrap: str, timeout_s: float) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    # "connection refused" is the expected answer while the broker boots: keep it quiet.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2_000)
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)


def broker_answers(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True when a real metadata request to ``bootstrap`` succeeds within ``timeout_s``."""
    try:
        asyncio.run(_list_topics(bootstrap, timeout_s))
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False
    return True


@dataclass
class LocalKafka:
    """One single-node KRaft broker on 127.0.0.1 owned by this process.

    Attributes:
        data_root: Holds ``server.properties``, the KRaft log directory and ``broker.log``.
        port: The PLAINTEXT listener (0 picks a free port at first start).
        controller_port: The CONTROLLER listener (0 picks a free port at first start).
    """

    data_root: Path
    port: int = 0
    controller_port: int = 0
    heap_mb: int = 512
    extra_properties: dict[str, str] = field(default_factory=dict)
    format_args: tuple[str, ...] = ()  # extra storage-tool arguments (--add-scram ...)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _formatted: bool = field(default=False, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_root / "broker.log"

    @property
    def formatted_on_disk(self) -> bool:
        """True when ``data_root`` already holds a formatted KRaft log (kept between runs)."""
        return (self.data_root / "kraft-logs" / "meta.properties").exists()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _properties(self) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_root / "kraft-logs"),
            "num.partitions": "3",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            **self.extra_properties,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java(self, libs: Path, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise LocalKafkaError("java is not on PATH; the broker needs Java 17+")
        return [
            java, f"-Xmx{self.heap_mb}m", f"-Xms{min(self.heap_mb, 256)}m", *JVM_FLAGS,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp", f"{libs}/*", *args,
        ]  # fmt: skip

    def _format(self, libs: Path, props: Path, tries: int = 2) -> None:
        """Format a fresh KRaft log directory (one retry: a JVM can die on a loaded machine)."""
        for attempt in range(1, tries + 1):
            shutil.rmtree(self.data_root / "kraft-logs", ignore_errors=True)
            fmt = subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format",
                           "-t", new_cluster_id(), "-c", str(props), *self.format_args),
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            if fmt.returncode == 0:
                return
            if attempt == tries:
                raise LocalKafkaError(
                    f"formatting the KRaft log failed (exit {fmt.returncode}):\n"
                    f"{fmt.stdout}{fmt.stderr}"
                )

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        """Format (unless the data directory is formatted already), launch, and return once a
        real request succeeds."""
        if self._process is not None and self._process.poll() is None:
            raise LocalKafkaError("broker already running")
        libs = ensure_jars()
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        self.data_root.mkdir(parents=True, exist_ok=True)
        props = self.data_root / "server.properties"
        if not self._formatted:
            props.write_text(self._properties())
            if not self.formatted_on_disk:  # a kept --data-dir keeps its topics and offsets
                self._format(libs, props)
            self._formatted = True
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(props)),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the broker
            )  # fmt: skip
        self._wait_ready(ready_timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise LocalKafkaError(f"broker exited early; log tail:\n{self.log_tail()}")
            if broker_answers(self.bootstrap_servers, timeout_s=3.0):
                return
            time.sleep(0.2)  # a blocking dev tool's poll interval, not synchronisation of tests
        self.stop()
        raise LocalKafkaError(
            f"broker not ready after {timeout_s:.0f}s; log tail:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (controlled shutdown), SIGKILL if it does not exit within ``timeout_s``."""
        proc, self._process = self._process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
        self._process = None

    def restart(self, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        """Stop, then start again on the same data directory and ports."""
        self.stop()
        self.start(ready_timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return "(no broker log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def _run(args: argparse.Namespace) -> int:
    data = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="local-kafka-"))
    broker = LocalKafka(data_root=data, port=args.port, controller_port=args.controller_port)
    started = time.monotonic()
    broker.start()
    line = {
        "event": "kafka.ready",
        "bootstrap_servers": broker.bootstrap_servers,
        "start_s": round(time.monotonic() - started, 2),
        "data_dir": str(data),
        "pid": broker.pid,
    }
    print(json.dumps(line), flush=True)  # noqa: T201 - the parent process reads this line
    stop = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        while not stop and broker._process is not None and broker._process.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()
        if not args.data_dir:
            shutil.rmtree(data, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.local_kafka fetch|run``."""
    parser = argparse.ArgumentParser(prog="local_kafka", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="fetch the broker jars into the cache and print where")
    run = sub.add_parser("run", help="start a broker in the foreground until SIGTERM/SIGINT")
    run.add_argument("--port", type=int, default=9092)
    run.add_argument("--controller-port", type=int, default=0)
    run.add_argument("--data-dir", default=None, help="keep data here (default: a temp dir)")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(ensure_jars())  # noqa: T201 - command output
            return 0
        return _run(args)
    except LocalKafkaError as exc:
        print(f"local_kafka: {exc}", file=sys.stderr)  # noqa: T201 - command output
        return 1


if __name__ == "__main__":
    sys.exit(main())
