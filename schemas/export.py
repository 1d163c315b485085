"""Export the JSON Schema of every public model, and keep the committed snapshots in step.

The snapshots under ``schemas/jsonschema/`` are the record of the data contracts: a change
to a model that changes its schema fails ``--check`` (and the snapshot test) until someone
runs ``python -m schemas.export --write`` on purpose and commits the new files. This is a
developer command; nothing at runtime writes files.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from schemas.envelope import CloudEvent
from schemas.outcomes import OutcomeDocument
from schemas.records import RECORD_TYPES

__all__ = [
    "SNAPSHOT_DIR",
    "all_models",
    "changed",
    "check_snapshots",
    "export_json_schemas",
    "main",
    "render",
    "write_snapshots",
]

#: Where the committed JSON Schema snapshots live, one ``<name>.json`` per schema.
SNAPSHOT_DIR: Final = Path(__file__).parent / "jsonschema"
_JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_DIFF_LINES_SHOWN: Final = 40


def all_models() -> dict[str, type[BaseModel]]:
    """Return every exported model by its public name (``cloudevent``, ``customer.v1``, ...)."""
    return {"cloudevent": CloudEvent, **RECORD_TYPES, "outcome.v1": OutcomeDocument}


def export_json_schemas() -> dict[str, dict[str, Any]]:
    """Return the JSON Schema of each model as accepted on input.

    The outcome, which the processor writes rather than reads, also gets its schema as
    serialised, under ``outcome.v1.serialization``.
    """
    schemas = {
        name: _with_dialect(model.model_json_schema(mode="validation"))
        for name, model in all_models().items()
    }
    schemas["outcome.v1.serialization"] = _with_dialect(
        OutcomeDocument.model_json_schema(mode="serialization")
    )
    return schemas


def _with_dialect(schema: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": _JSON_SCHEMA_DIALECT, **schema}


def render(schema: dict[str, Any]) -> str:
    """Render a schema the way snapshots are stored: sorted keys, indent 2, final newline."""
    return json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _expected_files() -> dict[str, str]:
    return {f"{name}.json": render(schema) for name, schema in export_json_schemas().items()}


def check_snapshots(directory: Path = SNAPSHOT_DIR) -> list[str]:
    """Compare the snapshots in ``directory`` with the models; return one line per problem."""
    expected = _expected_files()
    present = {path.name for path in directory.glob("*.json")}
    problems = [
        f"stale: {directory / name} (no model has this name)"
        for name in sorted(present - set(expected))
    ]
    for name, text in expected.items():
        path = directory / name
        if name not in present:
            problems.append(f"missing: {path}")
            continue
        current = path.read_text(encoding="utf-8")
        if current != text:
            problems.append(changed(path, current, text, "models"))
    return problems


def changed(path: Path, committed: str, expected: str, source: str) -> str:
    """``changed: <path>`` and the start of a unified diff from the committed text to the
    text ``source`` (the models, say) generates."""
    diff = list(
        difflib.unified_diff(
            committed.splitlines(),
            expected.splitlines(),
            f"{path.name} (committed)",
            f"{path.name} ({source})",
            lineterm="",
        )
    )
    shown = "\n".join(diff[:_DIFF_LINES_SHOWN])
    more = len(diff) - _DIFF_LINES_SHOWN
    tail = f"\n... {more} more diff lines" if more > 0 else ""
    return f"changed: {path}\n{shown}{tail}"


def write_snapshots(directory: Path = SNAPSHOT_DIR) -> list[Path]:
    """Write every schema to ``directory``, delete stale ones, and return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = _expected_files()
    for path in directory.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    written = []
    for name, text in expected.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m schemas.export --check`` or ``--write``; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--check", action="store_true", help="fail if a snapshot differs from the models"
    )
    mode.add_argument("--write", action="store_true", help="rewrite the snapshots from the models")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_snapshots():
            sys.stdout.write(f"wrote {path}\n")
        return 0
    problems = check_snapshots()
    if not problems:
        sys.stdout.write(f"JSON Schema snapshots in {SNAPSHOT_DIR} match the models\n")
        return 0
    sys.stderr.write("\n".join(problems) + "\n")
    sys.stderr.write(
        f"{len(problems)} snapshot(s) out of date; if the change is deliberate, run "
        "`python -m schemas.export --write` and commit the result\n"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
