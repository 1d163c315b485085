"""The public API for custom checks: what a check receives, what it returns, what it raises.

A custom check is an async function named in the config by import path::

    checks:
      order.v1:
        - name: stock_available
          upstream: stock                    # the upstream it may call (required)
          custom: acme_orders.checks:stock_available
          required: true                     # as for declarative checks
          when_present: lines                # optional, as for declarative checks

Signature: ``async def check(record: Any, upstream: Upstream) -> CheckVerdict``.

- ``record`` is the validated record: the pydantic model instance when the record type
  is a pydantic model, the normalised dict for a JSON Schema type.
- ``upstream`` is a handle to the check's upstream. ``await upstream.get(path,
  params=...)`` and ``await upstream.post(path, json=...)`` return a :class:`Response`
  (``status``, ``body``, also as ``json``). Every call goes through that upstream's
  cache, coalescing, circuit breaker, rate limit and retries, exactly like declarative
  checks, so a custom check cannot bypass the limits. Each call carries the
  ``Idempotency-Key`` ``<record id>:<check name>:<call index>``. ``path`` is relative to
  the upstream's ``base_url``; quote values you put into it (``urllib.parse.quote``).
- Return :class:`Passed` or :class:`Rejected` (a clear "no": the record is invalid with
  ``upstream.rejected`` and your ``reason``). Evidence is a small JSON mapping kept in the
  outcome, bounded (strings cut at 256 characters, 32 keys, 100 items, 4 levels).
- Raise nothing but the upstream errors: the handle raises them when the upstream could
  not answer after retries (:class:`UpstreamTimeout`, :class:`UpstreamUnavailable`,
  :class:`UpstreamRateLimited`, :class:`UpstreamBadResponse` for a non-2xx, non-JSON
  answer); let them through, or raise one yourself for an answer you cannot use. They map
  to the usual reason codes: a required check dead-letters the record, an optional one
  marks it ``valid_unverified``. Any other exception dead-letters it as
  ``internal.error``.

A complete example (``acme_orders/checks.py``)::

    from urllib.parse import quote

    from acme_orders.models import OrderV1
    from processor.sdk import CheckVerdict, Passed, Rejected, Upstream, UpstreamBadResponse


    async def stock_available(order: OrderV1, upstream: Upstream) -> CheckVerdict:
        short = []
        for line in order.lines:
            answer = await upstream.get(f"/v1/stock/{quote(line.sku, safe='')}")
            if not isinstance(answer.body, dict) or "available" not in answer.body:
                raise UpstreamBadResponse("stock: no 'available' field", upstream=upstream.name)
            if answer.body["available"] < line.quantity:
                short.append(line.sku)
        if short:
            return Rejected(reason=f"out of stock: {', '.join(short)}", evidence={"short": short})
        return Passed(evidence={"lines": len(order.lines)})
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from processor.errors import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

#: A query parameter's value: a scalar, or a list (the parameter repeated). None: left out.
QueryValue = str | int | float | bool | None | Sequence[str | int | float | bool]


@dataclass(frozen=True, slots=True)
class Passed:
    """The record passes this check."""

    evidence: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A clear "no": the record is invalid, ``reason`` says why (kept as ``evidence.reason``)."""

    reason: str
    evidence: Mapping[str, Any] | None = None


CheckVerdict = Passed | Rejected


@dataclass(frozen=True, slots=True)
class Response:
    """A 2xx answer with its decoded JSON body."""

    status: int
    body: Any

    @property
    def json(self) -> Any:
        """The decoded JSON body (the same as ``body``)."""
        return self.body


class Upstream(Protocol):
    """A handle to one upstream: every call goes through its resilience stack."""

    name: str

    async def get(self, path: str, params: Mapping[str, QueryValue] | None = None) -> Response:
        """GET ``path`` with query ``params`` and no body."""
        ...

    async def post(self, path: str, json: Any = None) -> Response:
        """POST ``json`` to ``path``."""
        ...


#: What ``custom:`` names: ``async def check(record, upstream) -> CheckVerdict``.
CustomCheck = Callable[[Any, Upstream], Awaitable[CheckVerdict]]

__all__ = [
    "CheckVerdict",
    "CustomCheck",
    "Passed",
    "QueryValue",
    "Rejected",
    "Response",
    "Upstream",
    "UpstreamBadResponse",
    "UpstreamError",
    "UpstreamRateLimited",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]
