"""The simulator's batch endpoints, decided purely: ``POST <path>/batch`` for each POST API.

``{"items": [<body>, ...]}`` is answered ``{"results": [...]}``, one result per item in item
order: the single endpoint's answer with ``"status": 200``, or ``{"status": 400, "error"}`` for
a malformed item (the others still answered). More than ``max_items`` items is 413, a body
without a non-empty ``items`` list 400, as batch verification APIs answer.
"""

from __future__ import annotations

from collections.abc import Callable

#: A single endpoint's answer to a decoded body; raises ValueError for a malformed one.
Answer = Callable[[object], dict[str, object]]


def answer_batch(answer: Answer, body: object, max_items: int) -> tuple[int, dict[str, object]]:
    """The HTTP status and JSON body answering a decoded batch request ``body``."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        return 400, {"error": 'body must be {"items": [...]} with at least one item'}
    if len(items) > max_items:
        return 413, {"error": f"{len(items)} items, at most {max_items} in one batch"}
    results: list[dict[str, object]] = []
    for item in items:
        try:
            results.append({**answer(item), "status": 200})
        except ValueError as exc:  # MalformedRequestError
            results.append({"status": 400, "error": str(exc)})
    return 200, {"results": results}
