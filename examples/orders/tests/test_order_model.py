"""The order.v1 model accepts real orders and names the field of every violation."""

from __future__ import annotations

from typing import Any

import pytest
from acme_orders.models import OrderV1
from pydantic import ValidationError

ORDER: dict[str, Any] = {
    "order_id": "ord-20261204a",
    "customer": {"id": "c-42", "email": "Buyer@Example.com", "name": "Dana Buyer"},
    "currency": "EUR",
    "amount": "59.97",
    "lines": [
        {"sku": "MUG-BLUE", "quantity": 2, "unit_price": "9.99"},
        {"sku": "TEAPOT-1", "quantity": 1, "unit_price": "39.99"},
    ],
}


def test_a_real_order_is_valid_and_normalised() -> None:
    """Amounts become decimals that dump as strings; the e-mail's domain is lower-cased."""
    order = OrderV1.model_validate(ORDER)
    dumped = order.model_dump(mode="json")
    assert dumped["amount"] == "59.97"
    assert dumped["customer"]["email"] == "Buyer@example.com"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lines": [{"sku": "bad sku", "quantity": 1, "unit_price": "1"}]}, ("lines", 0, "sku")),
        ({"customer": {"id": "c", "email": "nope", "name": "x"}}, ("customer", "email")),
        ({"currency": "euro"}, ("currency",)),
        ({"lines": []}, ("lines",)),
    ],
)
def test_a_violation_names_its_field(change: dict[str, Any], field: tuple[Any, ...]) -> None:
    """Each broken field is reported at its own path."""
    with pytest.raises(ValidationError) as caught:
        OrderV1.model_validate({**ORDER, **change})
    assert field in [err["loc"] for err in caught.value.errors()]


def test_the_amount_must_be_the_sum_of_the_lines() -> None:
    """A total that does not add up is rejected with both numbers in the message."""
    with pytest.raises(ValidationError, match=r"amount 60\.00 is not the sum of the lines"):
        OrderV1.model_validate({**ORDER, "amount": "60.00"})
