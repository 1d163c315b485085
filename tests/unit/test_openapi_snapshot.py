"""The validation API's committed OpenAPI snapshot matches the routes, and the command that
re-records it works."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.api.models import ERROR_STATUS
from processor.api.openapi import SNAPSHOT, check_snapshot, main, openapi_document, render


def test_committed_snapshot_matches_the_api() -> None:
    """docs/openapi.json is the document the API builds today (else: `make schemas`)."""
    assert SNAPSHOT.read_text(encoding="utf-8") == render(openapi_document()), (
        "The API's OpenAPI document changed; if deliberate, run `make schemas` and commit "
        "docs/openapi.json."
    )


def test_the_document_has_every_route_and_its_error_codes() -> None:
    """The document lists the /v1 routes and probes, and each route's error codes."""
    document = openapi_document()
    assert set(document["paths"]) >= {
        "/v1/validate", "/v1/validate/batch", "/v1/records", "/healthz", "/readyz",
    }  # fmt: skip
    assert document["info"]["version"] == "v1"
    described = " ".join(
        answer.get("description", "")
        for operations in document["paths"].values()
        for op in operations.values()
        for answer in op["responses"].values()
    )
    for code in ERROR_STATUS:
        if code != "batch.deadline_exceeded":  # an item's error, inside a 200
            assert f"`{code}`" in described


def test_check_reports_a_missing_and_a_changed_snapshot(tmp_path: Path) -> None:
    """A missing snapshot and an edited one are both reported (the check can fail)."""
    path = tmp_path / "openapi.json"
    assert check_snapshot(path) == [f"missing: {path}"]
    path.write_text(render(openapi_document()).replace('"v1"', '"v0"'), encoding="utf-8")
    (problem,) = check_snapshot(path)
    assert problem.startswith("changed:")
    assert "@@" in problem


def test_check_command_passes_on_the_committed_snapshot(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m processor.api.openapi --check` exits 0 on the committed snapshot."""
    assert main(["--check"]) == 0
    assert "matches the API" in capsys.readouterr().out
