"""Driving the validation API in tests: corpus records as HTTP bodies, answers as verdicts."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence
from typing import Any

import aiohttp

from devtools.corpus import CorpusRecord

TIMEOUT = aiohttp.ClientTimeout(total=60)
JSON = {"content-type": "application/json"}
CLOUDEVENT = {"content-type": "application/cloudevents+json"}


def structured_body(record: CorpusRecord) -> bytes:
    """The bytes a structured-mode producer would send for ``record`` (binary-mode records
    become the same event in structured mode; anything else is sent as it is)."""
    headers = dict(record.headers)
    if "ce_specversion" not in headers or record.value is None:
        return record.value or b""
    event: dict[str, Any] = {
        name.removeprefix("ce_"): value.decode()
        for name, value in record.headers
        if name.startswith("ce_")
    }
    event["datacontenttype"] = headers.get("content-type", b"application/json").decode()
    event["data"] = json.loads(record.value)
    return json.dumps(event).encode()


def batch_item(record: CorpusRecord) -> Any:
    """``record`` as one item of a JSON array: its event, or its bytes as a string when they
    are not JSON (the API then answers decode.failed, as the stream does for the bytes)."""
    body = structured_body(record)
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("latin-1")


def verdict(status: int, body: dict[str, Any]) -> tuple[str, str]:
    """``(outcome topic, reason code)`` of one answer: an outcome document or an error."""
    if status == 200:
        reasons = body["reasons"]
        return body["outcome"], reasons[0]["code"] if reasons else "ok"
    return "dead-letter", body["error"]


def item_verdict(item: dict[str, Any]) -> tuple[str, str]:
    """``(outcome topic, reason code)`` of one batch item."""
    if item["status"] == 200:
        return verdict(200, item["outcome"])
    return "dead-letter", item["error"]["error"]


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST ``body``; the status, the JSON answer and the headers."""
    data = io.BytesIO(body)  # aiohttp warns of large bytes bodies (they block the loop)
    async with http.post(url, data=data, headers=headers or CLOUDEVENT) as resp:
        return resp.status, await resp.json(content_type=None), dict(resp.headers)


async def validate_each(
    http: aiohttp.ClientSession, base: str, corpus: Sequence[CorpusRecord], parallel: int = 32
) -> list[tuple[str, str]]:
    """Each record through ``POST /v1/validate``, ``parallel`` at a time; verdicts in order."""
    room = asyncio.Semaphore(parallel)

    async def one(record: CorpusRecord) -> tuple[str, str]:
        async with room:
            status, body, _ = await post(http, f"{base}/v1/validate", structured_body(record))
            return verdict(status, body)

    return list(await asyncio.gather(*(one(r) for r in corpus)))


async def post_in_chunks(
    http: aiohttp.ClientSession, url: str, items: Sequence[Any], size: int
) -> list[tuple[int, dict[str, Any]]]:
    """``items`` as JSON arrays of ``size``, posted concurrently; answers in chunk order."""
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    answers = await asyncio.gather(
        *(post(http, url, json.dumps(list(chunk)).encode(), JSON) for chunk in chunks)
    )
    return [(status, body) for status, body, _ in answers]
