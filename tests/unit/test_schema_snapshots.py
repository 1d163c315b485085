"""Snapshot tests: committed JSON Schemas match the models, and the export command works."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.export import (
    SNAPSHOT_DIR,
    all_models,
    check_snapshots,
    export_json_schemas,
    main,
    render,
    write_snapshots,
)

_HOW_TO_UPDATE = (
    "The JSON Schema of {name} no longer matches schemas/jsonschema/{name}.json. A schema change"
    " is a breaking change for consumers; if it is deliberate, run"
    " `python -m schemas.export --write` and commit the updated snapshot."
)


def test_all_models_names_every_public_model() -> None:
    """The export covers the envelope, every record type and the outcome document."""
    assert sorted(all_models()) == ["cloudevent", "customer.v1", "outcome.v1", "transfer.v1"]


@pytest.mark.parametrize("name", sorted(export_json_schemas()))
def test_committed_snapshot_matches_the_model(name: str) -> None:
    """Each committed JSON Schema snapshot equals the schema the models generate today."""
    path = SNAPSHOT_DIR / f"{name}.json"
    assert path.is_file(), _HOW_TO_UPDATE.format(name=name)
    committed = path.read_text(encoding="utf-8")
    assert committed == render(export_json_schemas()[name]), _HOW_TO_UPDATE.format(name=name)


def test_no_stale_snapshot_is_committed() -> None:
    """Every committed snapshot belongs to a model that still exists."""
    committed = {path.stem for path in SNAPSHOT_DIR.glob("*.json")}
    assert committed == set(export_json_schemas()), (
        "Snapshots and models differ; run `python -m schemas.export --write` to resync."
    )


def test_render_sorts_keys_indents_and_ends_with_newline() -> None:
    """Snapshots are stored with sorted keys, two-space indent and a trailing newline."""
    assert render({"b": 1, "a": [True]}) == '{\n  "a": [\n    true\n  ],\n  "b": 1\n}\n'


def test_write_then_check_round_trips_in_an_empty_directory(tmp_path: Path) -> None:
    """Writing snapshots into a directory makes the check of that directory pass."""
    assert all(problem.startswith("missing:") for problem in check_snapshots(tmp_path))
    written = write_snapshots(tmp_path)
    assert {path.name for path in written} == {f"{name}.json" for name in export_json_schemas()}
    assert check_snapshots(tmp_path) == []


def test_check_reports_changed_and_stale_snapshots(tmp_path: Path) -> None:
    """An edited snapshot is reported with a diff and an unknown one as stale."""
    write_snapshots(tmp_path)
    (tmp_path / "customer.v1.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "retired.v0.json").write_text("{}\n", encoding="utf-8")
    problems = check_snapshots(tmp_path)
    stale, changed = problems
    assert stale.startswith("stale:")
    assert "retired.v0.json" in stale
    assert changed.startswith("changed:")
    assert "@@" in changed


def test_write_removes_stale_snapshots(tmp_path: Path) -> None:
    """Rewriting the snapshots deletes files no model produces any more."""
    (tmp_path / "retired.v0.json").write_text("{}\n", encoding="utf-8")
    write_snapshots(tmp_path)
    assert not (tmp_path / "retired.v0.json").exists()


def test_check_command_passes_on_the_committed_snapshots(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m schemas.export --check` exits 0 when the committed snapshots are current."""
    assert main(["--check"]) == 0
    assert "match the models" in capsys.readouterr().out


def test_command_requires_check_or_write() -> None:
    """The command refuses to run without choosing --check or --write."""
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
