"""Generate the AsyncAPI 3.0 document of the processor's topics from the pydantic models.

``docs/asyncapi.yaml`` describes the input, valid, invalid and dead-letter topics: each
message's payload (the models' JSON Schemas, their definitions moved into
``components/schemas`` so every internal ``$ref`` resolves), its headers (CloudEvents binary
``ce_*``, our ``record.*`` and ``dlq.*``), its key and the Kafka bindings. One input message
per record type in :data:`schemas.records.RECORD_TYPES` (the types the example config
loads), in both CloudEvents Kafka bindings (structured and binary).

``python -m schemas.asyncapi --write`` rewrites the document; ``--check`` (and the test)
fails when it drifts from the models. Topic names are the example config's defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel

from schemas.envelope import BINARY_HEADER_PREFIX, STRUCTURED_CONTENT_TYPE, CloudEvent
from schemas.outcomes import DLQ_HEADERS, OutcomeDocument
from schemas.records import RECORD_TYPES

__all__ = ["DOCUMENT", "build_document", "main", "render"]

DOCUMENT: Final = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
TOPICS: Final = {
    "input": "records.in",
    "valid": "records.valid",
    "invalid": "records.invalid",
    "deadLetter": "records.dlq",
}
_REF: Final = "#/components/schemas/{model}"
_KAFKA_BINDING: Final = "0.5.0"
_STRING: Final = {"type": "string"}

_CE_HEADERS: Final = {
    "specversion": "CloudEvents version (1.0).",
    "id": "The event id; the record's idempotency key.",
    "source": "URI-reference of the producer.",
    "type": "The record type; picks the data's schema.",
    "time": "RFC 3339 timestamp (optional).",
    "subject": "Subject of the event (optional).",
}
_OUTCOME_HEADERS: Final = {
    "content-type": "The payload's media type.",
    "record.id": "The input event's id.",
    "record.verdict": "The verdict (the document's verdict).",
}
_RECORD_PAYLOAD_HEADERS: Final = {
    "record.checks": "JSON object: check name -> status.",
    "record.reasons": "JSON list of reasons (bounded; absent when there are none).",
    "record.input": "Input coordinates: topic/partition/offset.",
}


def _schema(model: type[BaseModel], components: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The model's JSON Schema with its ``$defs`` moved into ``components``."""
    schema = model.model_json_schema(ref_template=_REF, **kwargs)
    for name, definition in schema.pop("$defs", {}).items():
        if components.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas are both named {name!r}")
    return schema


def _headers(described: dict[str, str], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object schema for Kafka headers (UTF-8 strings); other headers pass through."""
    return {
        "type": "object",
        "properties": {name: {**_STRING, "description": d} for name, d in described.items()},
        **({"required": list(required)} if required else {}),
        "additionalProperties": _STRING,
    }


def _message(
    name: str, title: str, payload: dict[str, Any], headers: dict[str, Any], content_type: str
) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "contentType": content_type,
        "payload": payload,
        "headers": headers,
        "bindings": {
            "kafka": {
                "key": {**_STRING, "description": "The producer's key, kept as it is."},
                "bindingVersion": _KAFKA_BINDING,
            }
        },
    }


def _input_messages(schemas: dict[str, Any]) -> dict[str, Any]:
    """Per record type: the structured (whole event as JSON) and binary (``ce_*``) forms."""
    schemas["CloudEvent"] = _schema(CloudEvent, schemas)
    messages = {}
    for type_name, model in sorted(RECORD_TYPES.items()):
        key = model.__name__
        schemas[key] = _schema(model, schemas)
        ref = {"$ref": _REF.format(model=key)}
        structured = {
            "allOf": [
                {"$ref": _REF.format(model="CloudEvent")},
                {"type": "object", "properties": {"type": {"const": type_name}, "data": ref}},
            ]
        }
        ce_headers = {f"{BINARY_HEADER_PREFIX}{k}": d for k, d in _CE_HEADERS.items()}
        ce_headers["content-type"] = "The data's media type (application/json)."
        binary_headers = _headers(
            ce_headers,
            required=tuple(f"{BINARY_HEADER_PREFIX}{k}" for k in ("specversion", "id", "source")),
        )
        binary_headers["properties"][f"{BINARY_HEADER_PREFIX}type"]["const"] = type_name
        ident = type_name.replace(".", "_")
        messages[f"{ident}_structured"] = _message(
            f"{type_name} (structured)",
            f"A {type_name} event as a structured CloudEvent",
            structured,
            _headers({"content-type": STRUCTURED_CONTENT_TYPE}),
            STRUCTURED_CONTENT_TYPE,
        )
        messages[f"{ident}_binary"] = _message(
            f"{type_name} (binary)",
            f"A {type_name} event in binary mode: the data as value, attributes in ce_ headers",
            ref,
            binary_headers,
            "application/json",
        )
    return messages


def _outcome_messages(schemas: dict[str, Any], outcome: str) -> dict[str, Any]:
    """The outcome document (``payload: document``) and the record form (``payload: record``)."""
    doc_ref = {"$ref": _REF.format(model="OutcomeDocument")}
    return {
        f"{outcome}_document": _message(
            f"outcome document ({outcome})",
            f"The {outcome} outcome: verdict, reasons, evidence, input coordinates",
            doc_ref,
            _headers(_OUTCOME_HEADERS, required=("record.id", "record.verdict")),
            "application/json",
        ),
        f"{outcome}_record": _message(
            f"record with verdict headers ({outcome})",
            f"The {outcome} record as a structured CloudEvent, the verdict in headers",
            {"$ref": _REF.format(model="CloudEvent")},
            _headers({**_OUTCOME_HEADERS, **_RECORD_PAYLOAD_HEADERS}),
            STRUCTURED_CONTENT_TYPE,
        ),
    }


def _dead_letter_message() -> dict[str, Any]:
    described = {name: f"Dead-letter metadata ({name})." for name in DLQ_HEADERS}
    described["dlq.reason"] = "A stable reason code (README: reason codes)."
    return {
        "deadLetter": _message(
            "dead letter",
            "The input record byte for byte (key, value, headers, timestamp) plus dlq.* headers",
            {"description": "The input's value, unchanged (possibly not JSON, possibly null)."},
            _headers(described, required=("dlq.reason", "dlq.original.topic")),
            "application/octet-stream",
        )
    }


def build_document(version: str = "outcome.v1") -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a dict."""
    schemas: dict[str, Any] = {}
    per_channel = {"input": _input_messages(schemas)}
    schemas["OutcomeDocument"] = _schema(OutcomeDocument, schemas, mode="serialization")
    per_channel["valid"] = _outcome_messages(schemas, "valid")
    per_channel["invalid"] = _outcome_messages(schemas, "invalid")
    per_channel["deadLetter"] = _dead_letter_message()
    components_messages = {k: v for msgs in per_channel.values() for k, v in msgs.items()}
    channels = {
        channel: {
            "address": TOPICS[channel],
            "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in msgs},
            "bindings": {"kafka": {"topic": TOPICS[channel], "bindingVersion": _KAFKA_BINDING}},
        }
        for channel, msgs in per_channel.items()
    }
    operations = {
        f"{'consume' if channel == 'input' else 'publish'}{channel[0].upper()}{channel[1:]}": {
            "action": "receive" if channel == "input" else "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [
                {"$ref": f"#/channels/{channel}/messages/{k}"} for k in per_channel[channel]
            ],
        }
        for channel in per_channel
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "record-processor topics",
            "version": version,
            "description": (
                "Generated by `python -m schemas.asyncapi --write` from the pydantic models; "
                "do not edit. Every input record yields exactly one record on valid, invalid "
                "or the dead-letter topic. Topic names are the example config's defaults."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "make run"}
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": dict(sorted(schemas.items())), "messages": components_messages},
    }


def render(document: dict[str, Any]) -> str:
    """YAML, keys in the order built, long lines kept whole."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000)


def main(argv: list[str] | None = None) -> int:
    """``python -m schemas.asyncapi --check`` or ``--write``; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m schemas.asyncapi", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="fail if the document drifted")
    mode.add_argument("--write", action="store_true", help="rewrite docs/asyncapi.yaml")
    args = parser.parse_args(argv)
    text = render(build_document())
    if args.write:
        DOCUMENT.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {DOCUMENT}\n")
        return 0
    if DOCUMENT.exists() and DOCUMENT.read_text(encoding="utf-8") == text:
        sys.stdout.write(f"{DOCUMENT} matches the models\n")
        return 0
    sys.stderr.write(
        f"{DOCUMENT} drifted from the models: run python -m schemas.asyncapi --write\n"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
