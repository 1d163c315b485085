"""The alert rules' own unit tests (``deploy/prometheus/alerts_test.yml``) pass under promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    """Every alert fires on the series built to trip it, and only then (promtool test rules)."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not on PATH: run `make prometheus`"
    done = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr
