"""docs/asyncapi.yaml: in step with the models, every internal $ref resolving, every record
type of the example config described, and valid for the official parser (@asyncapi/parser,
installed by `make test` with `npm ci` from tools/asyncapi/package-lock.json, once per lock;
no parser or no node fails the test)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from processor.config import load_settings
from schemas.asyncapi import DOCUMENT, build_document, render
from schemas.envelope import BINARY_HEADER_PREFIX
from schemas.outcomes import DLQ_HEADERS

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "asyncapi"
PARSE_TIMEOUT_S = 120


def _committed() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_the_committed_document_matches_the_models() -> None:
    """A model change that is not regenerated (`make asyncapi`) fails here."""
    assert DOCUMENT.read_text(encoding="utf-8") == render(build_document()), (
        "docs/asyncapi.yaml drifted: run `python -m schemas.asyncapi --write` and commit it"
    )


def test_every_internal_ref_resolves() -> None:
    """No `$ref` points at a `$defs` left behind or at a missing component."""
    document = _committed()
    refs = _refs(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict), ref
            assert part in node, ref
            node = node[part]
    assert "$defs" not in DOCUMENT.read_text(encoding="utf-8")


def test_topics_headers_and_the_example_configs_record_types_are_described() -> None:
    """The four topics of the example config, one structured and one binary message per
    record type it loads, the ce_ and dlq.* headers, and a Kafka key binding."""
    document = _committed()
    example = load_settings(ROOT / "deploy" / "config" / "processor.example.yaml")
    topics = example.kafka.topics
    addresses = {name: c["address"] for name, c in document["channels"].items()}
    assert addresses == {"input": topics.input, "valid": topics.valid,
                         "invalid": topics.invalid, "deadLetter": topics.dead_letter}  # fmt: skip
    messages = document["components"]["messages"]
    for record_type in example.types.names():
        ident = record_type.replace(".", "_")
        binary = messages[f"{ident}_binary"]
        assert binary["headers"]["properties"][f"{BINARY_HEADER_PREFIX}type"]["const"] == (
            record_type
        )
        assert f"{ident}_structured" in messages
    dead = messages["deadLetter"]["headers"]["properties"]
    assert set(DLQ_HEADERS) <= set(dead)
    assert all("key" in m["bindings"]["kafka"] for m in messages.values())


def test_the_official_parser_accepts_the_document() -> None:
    """tools/asyncapi/validate.mjs (the parser `make test` installs): no error-level
    diagnostic."""
    node = shutil.which("node")
    assert node is not None, "node is required to validate docs/asyncapi.yaml"
    assert (TOOL / "node_modules" / "@asyncapi" / "parser").is_dir(), (
        "@asyncapi/parser is not installed: `make asyncapi-parser` (make test does it)"
    )
    parsed = subprocess.run(
        [node, "validate.mjs", str(DOCUMENT)],
        cwd=TOOL, capture_output=True, text=True, timeout=PARSE_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    assert "valid:" in parsed.stdout
