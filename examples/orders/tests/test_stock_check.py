"""The stock check passes, rejects with the short lines named, and lets upstream errors through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from acme_orders.checks import stock_available
from acme_orders.models import OrderV1

from processor.sdk import Passed, QueryValue, Rejected, Response, UpstreamUnavailable

ORDER = OrderV1.model_validate(
    {
        "order_id": "ord-20261204a",
        "customer": {"id": "c-42", "email": "buyer@example.com", "name": "Dana Buyer"},
        "currency": "EUR",
        "amount": "59.97",
        "lines": [
            {"sku": "MUG-BLUE", "quantity": 2, "unit_price": "9.99"},
            {"sku": "TEAPOT-1", "quantity": 1, "unit_price": "39.99"},
        ],
    }
)


class FakeStock:
    """An upstream handle that answers from a table of available quantities."""

    name = "stock"

    def __init__(self, available: dict[str, int] | None = None, down: bool = False) -> None:
        self.available = available or {}
        self.down = down
        self.paths: list[str] = []

    async def get(self, path: str, params: Mapping[str, QueryValue] | None = None) -> Response:
        self.paths.append(path)
        if self.down:
            raise UpstreamUnavailable("stock: 503", upstream=self.name)
        sku = path.rsplit("/", 1)[1]
        return Response(200, {"sku": sku, "stock": {"available": self.available.get(sku, 0)}})

    async def post(self, path: str, json: Any = None) -> Response:
        raise AssertionError("the stock check only reads")


async def test_an_order_in_stock_passes_with_one_call_per_line() -> None:
    """Enough of every SKU: Passed, and each line's SKU was asked once."""
    stock = FakeStock({"MUG-BLUE": 5, "TEAPOT-1": 1})
    assert await stock_available(ORDER, stock) == Passed(evidence={"lines": 2})
    assert sorted(stock.paths) == ["/v1/stock/MUG-BLUE", "/v1/stock/TEAPOT-1"]


async def test_a_short_line_is_rejected_naming_the_sku_and_quantities() -> None:
    """One line short: Rejected, its reason naming the SKU, what is available and ordered."""
    verdict = await stock_available(ORDER, FakeStock({"MUG-BLUE": 1, "TEAPOT-1": 3}))
    assert isinstance(verdict, Rejected)
    assert verdict.reason == "out of stock: MUG-BLUE (1 available, 2 ordered)"


async def test_an_upstream_failure_is_raised_not_judged() -> None:
    """A stock API that cannot answer raises the upstream error (dead letter, not invalid)."""
    with pytest.raises(UpstreamUnavailable):
        await stock_available(ORDER, FakeStock(down=True))
