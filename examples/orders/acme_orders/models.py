"""The ``order.v1`` record: an order with its customer, currency, amount and line items.

A plain pydantic v2 model: the processor validates each event's ``data`` with it, publishes
``model_dump(mode="json")`` as the normalised data, and reports every violation with its field
path (``lines.0.sku``). Limits on every string and list keep one hostile record cheap.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

__all__ = ["Customer", "OrderLine", "OrderV1"]

Sku = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{2,31}$", description="stock unit")]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Customer(_Strict):
    """Who ordered."""

    id: str = Field(min_length=1, max_length=64)
    email: EmailStr = Field(max_length=254)
    name: str = Field(min_length=1, max_length=200)


class OrderLine(_Strict):
    """One line item: what, how many, at what unit price."""

    sku: Sku
    quantity: int = Field(ge=1, le=10_000)
    unit_price: Money


class OrderV1(_Strict):
    """An order as the shop publishes it to ``records.in`` (CloudEvent type ``order.v1``)."""

    order_id: str = Field(pattern=r"^ord-[0-9a-z]{4,32}$")
    customer: Customer
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")
    amount: Money
    lines: list[OrderLine] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _amount_is_the_sum_of_the_lines(self) -> Self:
        total = sum((line.quantity * line.unit_price for line in self.lines), Decimal(0))
        if total != self.amount:
            raise ValueError(f"amount {self.amount} is not the sum of the lines ({total})")
        return self
