"""Tests of the schemas package's public surface and of its place at the bottom of the layers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import schemas

SCHEMAS_DIR = Path(schemas.__file__).parent


def test_all_lists_the_public_api() -> None:
    """schemas.__all__ names exactly the public contracts, and each name resolves."""
    assert sorted(schemas.__all__) == sorted(
        [
            "BINARY_HEADER_PREFIX",
            "DLQ_HEADERS",
            "REASON_CATALOGUE",
            "RECORD_TYPES",
            "REQUIRED_ATTRIBUTES",
            "STRUCTURED_CONTENT_TYPE",
            "CheckResult",
            "CheckStatus",
            "CloudEvent",
            "CustomerV1",
            "InputCoordinates",
            "OutcomeDocument",
            "ProcessorInfo",
            "Reason",
            "ReasonCode",
            "Timing",
            "TransferV1",
            "Verdict",
        ]
    )
    assert all(hasattr(schemas, name) for name in schemas.__all__)


def test_importing_schemas_loads_nothing_from_processor() -> None:
    """A fresh interpreter can import schemas without any processor module being loaded."""
    code = (
        "import schemas, schemas.export, sys; "
        "assert not any(m == 'processor' or m.startswith('processor.') for m in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=SCHEMAS_DIR.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
