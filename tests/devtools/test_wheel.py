"""The wheel built from the project ships the service and its contracts, no developer tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 120


def _build_wheel(tmp_path: Path) -> Path:
    """Build the wheel offline from a copy of the checkout (the checkout gets no build/)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("processor", "schemas", "devtools", "tests"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    out = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("record_processor-*.whl")
    return wheel


def test_the_wheel_holds_processor_and_schemas_and_no_devtools(tmp_path: Path) -> None:
    """The wheel holds both packages with their data files, and no devtools or tests."""
    with zipfile.ZipFile(_build_wheel(tmp_path)) as wheel:
        names = wheel.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = Parser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist", [])
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"processor", "schemas"}
    assert {"processor/py.typed", "schemas/py.typed", "processor/cli.py"} <= set(names)
    snapshots = [n for n in names if n.startswith("schemas/jsonschema/") and n.endswith(".json")]
    assert len(snapshots) == len(list((ROOT / "schemas" / "jsonschema").glob("*.json"))) > 0
    runtime = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("aiokafka") for r in runtime)
    assert not [r for r in runtime if r.split()[0].lower().startswith("rich")]
