"""Tests of the batcher: gathering, fan-out, per-item retries, and resilience per request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from processor.batchplan import BatchConfig
from processor.config import BreakerConfig, RetryConfig
from processor.errors import UpstreamBadResponse, UpstreamError
from processor.upstream.batcher import Batcher
from processor.upstream.breaker import BreakerState
from processor.upstream.client import UpstreamRequest, UpstreamResponse
from processor.upstream.limiter import TokenBucket
from processor.waits import CURRENT_PARTITION
from tests.unit.test_resilient_caller import (
    BOUND_S,
    SHORT_OPEN_S,
    UPSTREAM,
    Rig,
    _request,
    server_error,
)

BATCH_PATH = "/v1/email/verify/batch"
#: Long enough that only a full batch is sent in a test (a timed flush would hang it).
NEVER_MS = 10_000.0


def _answer(item: dict[str, Any], status: int = 200) -> dict[str, Any]:
    return {"email": item["email"], "deliverable": not item["email"].startswith("bounce"),
            "status": status}  # fmt: skip


def verify(request: UpstreamRequest) -> UpstreamResponse:
    """Answers every item, in order."""
    results = [_answer(item) for item in request.json_body["items"]]
    return UpstreamResponse(200, {"results": results}, latency_ms=2.0)


def only(*emails: str, others: int = 0) -> Any:
    """Answers the items for ``emails``; the others with status ``others`` (0: left out)."""

    def answer(request: UpstreamRequest) -> UpstreamResponse:
        results = [
            _answer(item) if item["email"] in emails else _answer(item, others)
            for item in request.json_body["items"]
            if item["email"] in emails or others
        ]
        return UpstreamResponse(200, {"results": results}, latency_ms=2.0)

    return answer


def items_sent(rig: Rig) -> list[list[str]]:
    return [[i["email"] for i in r.json_body["items"]] for r in rig.transport.requests]


class Batched:
    """A batcher on a rig's caller, the sizes of its batch requests recorded."""

    def __init__(self, rig: Rig, **config: Any) -> None:
        config.setdefault("max_wait_ms", NEVER_MS)
        self.sizes: list[int] = []
        cfg = BatchConfig(path=BATCH_PATH, **config)
        self.batcher = Batcher(rig.caller, cfg, self.sizes.append)

    async def calls(self, *emails: str) -> list[UpstreamResponse | BaseException]:
        requests = [_request(e, record=f"rec-{i}") for i, e in enumerate(emails)]
        return await asyncio.wait_for(
            asyncio.gather(*(self.batcher.call(r) for r in requests), return_exceptions=True),
            BOUND_S,
        )


def bodies(answers: list[UpstreamResponse | BaseException]) -> list[Any]:
    return [a.body if isinstance(a, UpstreamResponse) else type(a).__name__ for a in answers]


async def test_a_full_batch_is_sent_at_once_and_answers_fan_out_by_position() -> None:
    """max_items calls make one request (no waiting) and each caller gets its own answer."""
    rig = Rig([verify])
    answers = await Batched(rig, max_items=3).calls("a@x", "bounce@x", "c@x")
    assert items_sent(rig) == [["a@x", "bounce@x", "c@x"]]
    assert [b["deliverable"] for b in bodies(answers)] == [True, False, True]
    assert [b["email"] for b in bodies(answers)] == ["a@x", "bounce@x", "c@x"]
    assert rig.transport.requests[0].path == BATCH_PATH


async def test_a_partial_batch_is_sent_after_max_wait_ms() -> None:
    """Fewer than max_items calls are sent together once the oldest waited max_wait_ms."""
    rig = Rig([verify])
    batched = Batched(rig, max_items=100, max_wait_ms=5)
    answers = await batched.calls("a@x", "b@x")
    assert items_sent(rig) == [["a@x", "b@x"]]
    assert batched.sizes == [2]
    assert all(isinstance(a, UpstreamResponse) and a.attempts == 1 for a in answers)


async def test_more_calls_than_max_items_make_several_requests() -> None:
    """Seven calls with max_items 3 go out as 3 + 3 + 1 (the last after max_wait_ms)."""
    rig = Rig([verify] * 3)
    batched = Batched(rig, max_items=3, max_wait_ms=5)
    answers = await batched.calls(*(f"u{i}@x" for i in range(7)))
    assert batched.sizes == [3, 3, 1]
    assert [b["email"] for b in bodies(answers)] == [f"u{i}@x" for i in range(7)]


async def test_a_retry_resends_only_the_items_without_a_definite_answer() -> None:
    """An item answered is done; a missing one and one answered 503 go again, alone."""
    rig = Rig([only("a@x"), verify], retry=RetryConfig(max_attempts=3))
    batched = Batched(rig, max_items=3, match="key", item_key="email", status_field="status")
    answers = await batched.calls("a@x", "b@x", "c@x")
    assert items_sent(rig) == [["a@x", "b@x", "c@x"], ["b@x", "c@x"]]
    assert [a.attempts for a in answers if isinstance(a, UpstreamResponse)] == [1, 2, 2]
    rig2 = Rig([only("a@x", others=503), verify])
    batched2 = Batched(rig2, max_items=2, match="key", item_key="email", status_field="status")
    await batched2.calls("a@x", "b@x")
    assert items_sent(rig2) == [["a@x", "b@x"], ["b@x"]]


async def test_an_item_that_outlives_max_attempts_raises_for_its_caller_only() -> None:
    """After max_attempts an unanswered item raises UpstreamError; the answered one passes."""
    rig = Rig([only("a@x"), only("a@x")], retry=RetryConfig(max_attempts=2))
    answers = await Batched(rig, max_items=2, match="key", item_key="email").calls("a@x", "b@x")
    assert isinstance(answers[0], UpstreamResponse)
    assert isinstance(answers[1], UpstreamError)
    assert answers[1].attempts == 2
    assert answers[1].retriable


async def test_an_item_answered_4xx_fails_alone_without_a_retry() -> None:
    """An item's own 400 is a bad answer for that item: not retried, the others answered."""
    rig = Rig([only("a@x", others=400)])
    batched = Batched(rig, max_items=2, match="key", item_key="email", status_field="status")
    answers = await batched.calls("a@x", "b@x")
    assert isinstance(answers[0], UpstreamResponse)
    assert isinstance(answers[1], UpstreamBadResponse)
    assert answers[1].status == 400
    assert len(rig.transport.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        UpstreamBadResponse("HTTP 413", upstream=UPSTREAM, status=413),
        UpstreamResponse(200, {"results": [{"email": "a@x"}]}, latency_ms=1.0),  # 1 for 2
        UpstreamResponse(200, {"answers": []}, latency_ms=1.0),
    ],
    ids=["413", "count-mismatch", "no-list"],
)
async def test_an_unusable_batch_answer_fails_every_item_without_a_retry(answer: Any) -> None:
    """A 4xx for the request, or an answer that cannot be matched, fails each item once."""
    rig = Rig([answer])
    answers = await Batched(rig, max_items=2).calls("a@x", "b@x")
    assert bodies(answers) == ["UpstreamBadResponse", "UpstreamBadResponse"]
    assert len(rig.transport.requests) == 1


async def test_the_breaker_counts_batch_requests_not_items() -> None:
    """Two failed requests of five items are two failures: a breaker tripping at 3 stays closed."""
    breaker = BreakerConfig(consecutive_failures=3, min_calls=1_000)
    rig = Rig([server_error(), server_error(), verify], breaker=breaker)
    answers = await Batched(rig, max_items=5).calls(*(f"u{i}@x" for i in range(5)))
    assert rig.breaker.state is BreakerState.CLOSED
    assert rig.observer.of("call_ended") == [("5xx", 0.0), ("5xx", 0.0), ("2xx", 0.0)]
    assert {a.attempts for a in answers if isinstance(a, UpstreamResponse)} == {3}


async def test_an_open_breaker_blocks_the_partition_of_every_record_in_the_batch() -> None:
    """While a batch waits for an open breaker, each of its records' partitions is blocked."""
    breaker = BreakerConfig(consecutive_failures=1, open_s=SHORT_OPEN_S)
    rig = Rig([server_error(), verify], breaker=breaker, real_breaker_clock=True)
    batcher = Batched(rig, max_items=2).batcher

    async def lane(partition: int, email: str) -> UpstreamResponse:
        CURRENT_PARTITION.set(("orders", partition))
        return await batcher.call(_request(email, record=email))

    answers = await asyncio.wait_for(asyncio.gather(lane(1, "a@x"), lane(2, "b@x")), BOUND_S)
    assert [a.attempts for a in answers] == [2, 2]
    half_opened_with = [blocked for state, blocked in rig.transitions
                        if state is BreakerState.HALF_OPEN]  # fmt: skip
    assert half_opened_with == [{("orders", 1), ("orders", 2)}]
    assert rig.board.blocked() == set()


async def test_one_rate_limit_token_per_batch_request() -> None:
    """Ten items in two requests take two tokens."""

    class Counting(TokenBucket):
        taken = 0

        async def acquire(self) -> float:
            Counting.taken += 1
            return await super().acquire()

    rig = Rig([verify, verify], limiter=lambda _t: Counting(None))
    await Batched(rig, max_items=5).calls(*(f"u{i}@x" for i in range(10)))
    assert Counting.taken == 2


async def test_cache_and_coalescing_stay_per_item() -> None:
    """A cached item never enters a batch; two callers of one item share one place in it."""
    rig = Rig([verify, verify])
    batched = Batched(rig, max_items=100, max_wait_ms=5)
    await batched.calls("a@x")
    answers = await batched.calls("a@x", "b@x", "b@x")
    assert items_sent(rig) == [["a@x"], ["b@x"]]
    assert [a.attempts for a in answers if isinstance(a, UpstreamResponse)] == [0, 1, 0]
    assert sorted(rig.observer.of("cache")) == ["coalesced", "hit", "miss", "miss"]


async def test_a_caller_gone_before_the_flush_leaves_the_batch() -> None:
    """A call cancelled while its batch is open is not sent."""
    rig = Rig([verify])
    batched = Batched(rig, max_items=2, max_wait_ms=5)
    gone = asyncio.ensure_future(batched.batcher.call(_request("gone@x")))
    await asyncio.sleep(0)
    gone.cancel()
    answers = await batched.calls("a@x")
    assert items_sent(rig) == [["a@x"]]
    assert isinstance(answers[0], UpstreamResponse)
    await batched.batcher.aclose()


@pytest.mark.parametrize(
    ("batch", "body", "method", "path", "why"),
    [
        ({"match": "key"}, {"email": "email"}, "POST", "/v1/e", "needs item_key"),
        ({"match": "key", "item_key": "mail"}, {"email": "email"}, "POST", "/v1/e",
         "not a key of body"),
        ({"item_key": "email"}, {"email": "email"}, "POST", "/v1/e", "are for match: key"),
        ({}, {}, "GET", "/v1/e", "needs a POST check with a body"),
        ({}, {"email": "email"}, "POST", "/v1/e/{email}", "placeholders"),
        ({"max_items": 0}, {"email": "email"}, "POST", "/v1/e", "max_items"),
    ],
)  # fmt: skip
def test_batch_config_is_checked_when_read(
    batch: dict[str, Any], body: dict[str, str], method: str, path: str, why: str
) -> None:
    """A batch section that cannot work is a config error saying why."""
    from processor.checkplan import CheckConfig

    spec = {"name": "email", "upstream": "email", "method": method, "path": path, "body": body,
            "pass_field": "deliverable", "batch": {"path": BATCH_PATH, **batch}}  # fmt: skip
    with pytest.raises(ValueError, match=why):
        CheckConfig.model_validate(spec)


async def test_a_bug_while_sending_reaches_every_caller_as_itself() -> None:
    """An unexpected error while sending a batch is raised to each of its callers (their
    records become internal errors), not turned into a cancellation nobody handles."""

    def broken(_request: UpstreamRequest) -> UpstreamResponse:
        raise RuntimeError("a bug in the batch path")

    rig = Rig([broken])
    answers = await Batched(rig, max_items=2).calls("a@x", "b@x")
    assert [type(a) for a in answers] == [RuntimeError, RuntimeError]
