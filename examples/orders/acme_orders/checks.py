"""Acme's custom check for ``order.v1``: is every line item in stock?

The stock API answers one SKU at a time (``GET /v1/stock/{sku}``), so one order makes one
call per line. The ``upstream`` handle sends each call through the processor's rate limit,
circuit breaker, retries, cache and coalescing for the ``stock`` upstream: this code cannot
overrun the stock API's limits, and an answer cached for one order serves the next.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from acme_orders.models import OrderLine, OrderV1
from processor.sdk import CheckVerdict, Passed, Rejected, Upstream, UpstreamBadResponse

__all__ = ["stock_available"]


async def _available(upstream: Upstream, line: OrderLine) -> int:
    answer = await upstream.get(f"/v1/stock/{quote(line.sku, safe='')}")
    stock: Any = answer.body.get("stock") if isinstance(answer.body, dict) else None
    available = stock.get("available") if isinstance(stock, dict) else None
    if not isinstance(available, int):
        # An answer we cannot read: a bad response, dead-lettered if it persists.
        raise UpstreamBadResponse("stock: answer has no stock.available", upstream=upstream.name)
    return available


async def stock_available(order: OrderV1, upstream: Upstream) -> CheckVerdict:
    """Pass when every line's quantity is available; otherwise say which lines are short."""
    # Lines are asked concurrently; the upstream's own concurrency bound and rate limit
    # still apply. gather lets the first upstream error through as it is, so it maps to its
    # reason code (a TaskGroup would wrap it in an ExceptionGroup).
    available = await asyncio.gather(*(_available(upstream, line) for line in order.lines))
    short = [
        f"{line.sku} ({have} available, {line.quantity} ordered)"
        for line, have in zip(order.lines, available, strict=True)
        if have < line.quantity
    ]
    if short:
        return Rejected(reason=f"out of stock: {'; '.join(short)}", evidence={"short": short})
    return Passed(evidence={"lines": len(order.lines)})
