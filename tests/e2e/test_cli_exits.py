"""The CLI as a subprocess: exit codes and message lines when Kafka is unreachable, and
check-config writing into a pipe whose reader has gone."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "config" / "processor.example.yaml"
TIMEOUT_S = 60


@pytest.fixture
def refused_bootstrap() -> Iterator[str]:
    """A 127.0.0.1 address that refuses connections: a bound port nobody listens on."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{held.getsockname()[1]}"


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "processor.cli", *argv]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["run"], "processor: cannot connect to Kafka at "),
        (["topics", "create"], "processor: cannot create topics on "),
        (["produce"], "processor: cannot produce to records.in on "),
    ],
)
def test_an_unreachable_kafka_exits_1_with_one_message_line(
    tmp_path: Path, refused_bootstrap: str, command: list[str], message: str
) -> None:
    """run, topics create and produce exit 1 with one stderr line when Kafka refuses."""
    config = tmp_path / "processor.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap_servers": refused_bootstrap, "request_timeout_ms": 1000},
                "endpoint": {"port": 0},
            }
        )
    )
    done = subprocess.run(
        _cli(*command, "--config", str(config)),
        input=b'{"id": "a-1"}\n', capture_output=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(message)
    assert refused_bootstrap.rpartition(":")[2] in lines[0]  # the port it tried


def test_check_config_into_a_closed_pipe_exits_0_without_a_traceback() -> None:
    """check-config whose reader has gone (`| head`) ends quietly with exit 0."""
    proc = subprocess.Popen(
        _cli("check-config", "--config", str(EXAMPLE)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # the only read end: the child's write fails with EPIPE
    try:
        assert proc.wait(TIMEOUT_S) == 0
        assert proc.stderr.read() == b""
    finally:
        proc.stderr.close()
        if proc.returncode is None:
            proc.kill()
            proc.wait(TIMEOUT_S)
