"""The Containerfile's invariants, checked without a container engine: two stages, the wheel
built and installed at build time with the lock, a non-root user, `processor run` as entry
point, the documented config path, and nothing installed when the container starts."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for pair in _instructions():
        if pair[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(pair)
    return stages


def test_it_is_multi_stage_and_the_runtime_copies_only_the_built_environment() -> None:
    """A build stage makes the wheel and installs it with constraints.txt; the runtime stage
    copies the virtualenv from it and runs no pip."""
    stages = _stages()
    build, runtime = stages[0], stages[-1]
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE} AS runtime")
    build_runs = " ".join(arg for word, arg in build if word == "RUN")
    assert "pip wheel" in build_runs
    assert "-c constraints.txt" in build_runs
    assert "record_processor-*.whl" in build_runs
    copies = [arg for word, arg in runtime if word == "COPY"]
    assert any(arg.startswith("--from=build /opt/processor") for arg in copies)
    runtime_runs = " ".join(arg for word, arg in runtime if word == "RUN")
    assert "pip" not in runtime_runs


def test_the_runtime_runs_as_a_numeric_non_root_user() -> None:
    """The last USER is a numeric uid other than 0 (Kubernetes runAsNonRoot can verify it)."""
    users = [arg for word, arg in _stages()[-1] if word == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_the_entry_point_is_processor_run_with_the_mounted_config_and_nothing_installs() -> None:
    """ENTRYPOINT/CMD (exec form) start `processor run --config /etc/processor/...`, with no
    shell and no installer; there is no HEALTHCHECK (probes are the orchestrator's)."""
    runtime = dict(_stages()[-1])
    entry = json.loads(runtime["ENTRYPOINT"])
    cmd = json.loads(runtime["CMD"])
    assert entry == ["processor", "run"]
    assert cmd == ["--config", "/etc/processor/processor.yaml"]
    started = " ".join(entry + cmd)
    assert "pip" not in started
    assert "sh" not in entry
    assert "HEALTHCHECK" not in runtime
    assert "/run/secrets/processor" in CONTAINERFILE.read_text()
    assert "9400" in runtime["EXPOSE"]
    # both HTTP surfaces listen beyond the container's loopback
    assert {"PROCESSOR_ENDPOINT__HOST=0.0.0.0", "PROCESSOR_API__HOST=0.0.0.0"} <= set(
        runtime["ENV"].split()
    ), runtime["ENV"]
    assert "8400" in runtime["EXPOSE"]
