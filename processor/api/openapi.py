"""The validation API's OpenAPI document, and the committed snapshot kept in step with it.

``docs/openapi.json`` is the record of the API's contract, like the JSON Schema snapshots of
``schemas/jsonschema/``: a change to a route, a model or a guard that changes the document
fails ``--check`` (and the snapshot test) until someone runs ``make schemas`` (``python -m
processor.api.openapi --write``) on purpose and commits the new file. A developer command;
the running API serves the same document at ``/openapi.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from processor.api.app import build_api
from processor.api.errors import ApiProblem
from processor.api.models import BatchResult
from processor.api.routes import ApiContext
from processor.config_api import ApiConfig
from schemas.export import changed
from schemas.outcomes import OutcomeDocument

#: The committed snapshot (in a source checkout).
SNAPSHOT: Final = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


class _Unserved:
    """Stands in for the service and the producer: building the document calls neither."""

    def _never(self) -> NoReturn:
        raise AssertionError("the OpenAPI document is built without serving requests")

    async def judge_one(self, raw: bytes) -> OutcomeDocument | ApiProblem:
        self._never()

    async def judge_batch(self, events: Sequence[Any]) -> BatchResult:
        self._never()

    async def publish(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
        timeout_s: float,
    ) -> list[tuple[int, int]]:  # fmt: skip
        self._never()


def openapi_document(config: ApiConfig | None = None) -> dict[str, Any]:
    """The document of the API as built from ``config`` (default: the default section)."""
    config = config or ApiConfig()
    unserved = _Unserved()
    ctx = ApiContext(
        service=unserved, publisher=unserved, input_topic="-",
        max_request_bytes=0, max_batch_items=config.max_batch_items,
        request_timeout_s=config.request_timeout_s, ready=lambda: False,
    )  # fmt: skip
    return build_api(ctx, config.protection).openapi()


def render(document: dict[str, Any]) -> str:
    """As the snapshot is stored: sorted keys, indent 2, final newline."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def check_snapshot(path: Path = SNAPSHOT) -> list[str]:
    """Compare ``path`` with the document; one line (and a diff) per problem."""
    expected = render(openapi_document())
    if not path.is_file():
        return [f"missing: {path}"]
    current = path.read_text(encoding="utf-8")
    return [] if current == expected else [changed(path, current, expected, "routes")]


def write_snapshot(path: Path = SNAPSHOT) -> Path:
    path.write_text(render(openapi_document()), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m processor.api.openapi --check`` or ``--write``; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m processor.api.openapi")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="fail if the snapshot differs")
    mode.add_argument("--write", action="store_true", help="rewrite the snapshot")
    args = parser.parse_args(argv)
    if args.write:
        sys.stdout.write(f"wrote {write_snapshot()}\n")
        return 0
    problems = check_snapshot()
    if not problems:
        sys.stdout.write(f"{SNAPSHOT} matches the API\n")
        return 0
    sys.stderr.write("\n".join(problems) + "\n")
    sys.stderr.write("if the change is deliberate, run `make schemas` and commit the result\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
