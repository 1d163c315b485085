"""Custom checks the unit tests name by import path (``tests.support.custom_checks:...``)."""

from __future__ import annotations

from typing import Any

from processor.sdk import CheckVerdict, Passed, Rejected, Upstream, UpstreamUnavailable

#: Every record a check in this module was given, in order (tests clear it).
SEEN: list[Any] = []


async def stock_by_get(record: Any, upstream: Upstream) -> CheckVerdict:
    """Two GETs with query parameters; passes when both answers say available."""
    SEEN.append(record)
    first = await upstream.get("/v1/stock/A-1", params={"warehouse": "eu", "qty": 2})
    second = await upstream.get("/v1/stock/B-2", params={"tag": ["x", "y"], "skip": None})
    if first.json["available"] and second.json["available"]:
        return Passed(evidence={"checked": 2, "note": "n" * 1_000})
    return Rejected(reason="out of stock: B-2", evidence={"short": ["B-2"]})


async def posts_once(record: Any, upstream: Upstream) -> CheckVerdict:
    """One POST of the record's e-mail; passes when the answer says ok."""
    SEEN.append(record)
    email = record.email if hasattr(record, "email") else record["email"]
    answer = await upstream.post("/v1/screen", json={"email": email})
    return Passed() if answer.body.get("ok") else Rejected(reason=str(answer.body.get("why")))


async def always_unavailable(record: Any, upstream: Upstream) -> CheckVerdict:
    """Gives up as if the upstream kept failing."""
    raise UpstreamUnavailable("stock: HTTP 503", upstream=upstream.name, status=503)


async def returns_garbage(record: Any, upstream: Upstream) -> Any:
    """Returns something that is not a verdict."""
    return {"ok": True}


def not_async(record: Any, upstream: Upstream) -> CheckVerdict:
    """A synchronous function: not allowed as a custom check."""
    return Passed()


class AsyncCallable:
    """An object whose __call__ is async: allowed as a custom check."""

    async def __call__(self, record: Any, upstream: Upstream) -> CheckVerdict:
        return Passed()


callable_object = AsyncCallable()
NOT_CALLABLE = 42
