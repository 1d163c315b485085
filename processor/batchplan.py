"""A check's batch endpoint: how concurrent records' calls go into one request, and how its
answer is split back per item.

:class:`BatchConfig` is ``checks.<type>[i].batch`` as configured. Each item of a batch is the
JSON body the single call would have sent; the batch body is ``{items_field: [item, ...]}``
(or the bare list when ``items_field`` is null). The answer holds one answer per item under
``answers_field`` (or is the bare list), matched to the items by position or by a key: the
value of the item's ``item_key`` echoed in each answer's ``answer_key``. An answer may carry
its own HTTP-like status in ``status_field``: 2xx is a definite answer, 429 and 5xx mean "ask
again", any other status is a bad answer for that item. An item without an answer is asked
again. Pure: no I/O, no imports from the upstream layer.

The shape follows synchronous batch verification APIs: ZeroBounce's ``/v2/validatebatch``
(``{"email_batch": [{"email_address": ...}]}`` answered by ``{"email_batch": [{"address":
...}]}``, matched by address, at most 200 per call) and APIs that answer a list in request
order (matched by position).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: What an item's answer says: a definite answer, "ask again", or a bad answer (not retried).
DEFINITE, AGAIN, BAD = "definite", "again", "bad"
_KEY = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"


class BatchConfig(BaseModel):
    """A batch endpoint of one declarative check (POST, JSON)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(pattern=r"^/[^{}]*$", description="the batch endpoint (no placeholders)")
    method: Literal["POST"] = "POST"
    items_field: str | None = Field(
        default="items", pattern=_KEY, description="request key of the item list; null: bare list"
    )
    answers_field: str | None = Field(
        default="results", pattern=_KEY, description="answer key of the list; null: bare list"
    )
    match: Literal["position", "key"] = "position"
    item_key: str | None = Field(default=None, description="match key: a key of the check's body")
    answer_key: str | None = Field(default=None, description="match key in each answer")
    status_field: str | None = Field(default=None, description="per-answer HTTP-like status")
    max_items: int = Field(default=100, ge=1, le=10_000, description="items per request")
    max_wait_ms: float = Field(default=5.0, ge=0, le=10_000, description="oldest item waits")

    @model_validator(mode="after")
    def _matching(self) -> BatchConfig:
        if self.match == "key" and self.item_key is None:
            raise ValueError("batch: match key needs item_key (a key of the check's body)")
        if self.match == "position" and (self.item_key or self.answer_key):
            raise ValueError("batch: item_key/answer_key are for match: key")
        return self

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0

    def body(self, items: list[Any]) -> Any:
        """The batch request's JSON body for the items' single-call bodies."""
        return items if self.items_field is None else {self.items_field: items}

    def answers(self, body: Any, items: Sequence[Any]) -> list[Any] | str:
        """Each item's answer (None: not answered), or why the whole answer is unusable."""
        listed = body if self.answers_field is None else _get(body, self.answers_field)
        if not isinstance(listed, list):
            return f"no list under {self.answers_field or 'the answer'}"
        if self.match == "position":
            if len(listed) != len(items):
                return f"{len(listed)} answers for {len(items)} items"
            return listed
        assert self.item_key is not None
        answer_key = self.answer_key or self.item_key
        by_key = {_get(a, answer_key): a for a in listed if isinstance(a, dict)}
        return [by_key.get(_get(item, self.item_key)) for item in items]

    def verdict(self, answer: Any) -> tuple[str, int]:
        """Whether one item's answer is definite, to ask again, or bad; and its status."""
        if not isinstance(answer, dict):
            return (AGAIN, 0) if answer is None else (BAD, 0)
        if self.status_field is None:
            return DEFINITE, 200
        status = answer.get(self.status_field, 200)
        if not isinstance(status, int) or isinstance(status, bool):
            return BAD, 0
        if 200 <= status < 300:
            return DEFINITE, status
        if status == 429 or status >= 500:
            return AGAIN, status
        return BAD, status


def _get(body: Any, key: str) -> Any:
    return body.get(key) if isinstance(body, dict) else None
