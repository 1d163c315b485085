"""Unit tests of the API guards' pure logic: rate-limit layers on a fake clock, request
signatures, the API key ring, the idempotency store and the error shape's translations."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from processor.api import context
from processor.api.auth import ApiKeys, KeyRing, hash_key, load_key_ring, presented_key
from processor.api.errors import http_problem, validation_problem
from processor.api.idempotency import (
    Idempotency,
    IdempotencyStore,
    Seen,
    StoredResponse,
    fingerprint,
)
from processor.api.protection import ApiProtection
from processor.api.ratelimit import RateLayer, RateLimiter, RateLimits
from processor.api.signing import RequestSigning, SignatureCheck, sign
from processor.errors import ConfigError
from tests.unit.fake_time import FakeTime


def _limits(**layers: object) -> RateLimits:
    """Only the layers given (the defaults turned off)."""
    base = {"total": None, "per_key": None, "per_endpoint": None}
    return RateLimits.model_validate({**base, **layers})


# --- rate limits -------------------------------------------------------------------------


def test_a_layer_lets_its_burst_through_then_refuses_until_a_token_refills() -> None:
    """Burst 3 at 2/s: three pass, the fourth is refused with Retry-After 1, and half a second
    later (one token refilled) one more passes."""
    time = FakeTime()
    limiter = RateLimiter(_limits(total=RateLayer(rate_per_s=2, burst=3)), time.clock)
    assert [limiter.check("GET /x", None).allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.check("GET /x", None)
    assert refused.headers() == {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0",
                                 "X-RateLimit-Reset": "2", "Retry-After": "1"}  # fmt: skip
    time.advance(0.5)
    passed = limiter.check("GET /x", None)
    assert passed.allowed
    assert passed.headers() == {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0",
                                "X-RateLimit-Reset": "2"}  # fmt: skip


def test_retry_after_is_the_wait_for_a_whole_token_rounded_up() -> None:
    """At one token per 10 s an empty layer says Retry-After 10, then 4 after 6 s."""
    time = FakeTime()
    limiter = RateLimiter(_limits(total=RateLayer(rate_per_s=0.1, burst=1)), time.clock)
    assert limiter.check("GET /x", None).allowed
    assert limiter.check("GET /x", None).headers()["Retry-After"] == "10"
    time.advance(6)
    assert limiter.check("GET /x", None).headers()["Retry-After"] == "4"


def test_a_refused_request_charges_no_layer() -> None:
    """When the endpoint layer is empty, the refused requests leave the global layer's
    tokens where they were (all or nothing)."""
    time = FakeTime()
    limiter = RateLimiter(
        _limits(
            total=RateLayer(rate_per_s=1, burst=10), per_endpoint=RateLayer(rate_per_s=1, burst=1)
        ),
        time.clock,
    )
    assert limiter.check("POST /a", None).allowed
    for _ in range(5):
        assert not limiter.check("POST /a", None).allowed
    passed = limiter.check("POST /b", None)
    assert passed.allowed
    assert passed.tightest is not None
    assert (passed.tightest.layer, passed.tightest.remaining) == ("endpoint", 0)
    assert limiter.check("POST /c", None).allowed  # the global layer: 10 - 3 charged


def test_the_headers_come_from_the_layer_with_fewest_tokens_left() -> None:
    """With a roomy global layer and a tight key layer, the key layer's numbers are sent."""
    time = FakeTime()
    limiter = RateLimiter(
        _limits(
            total=RateLayer(rate_per_s=100, burst=100), per_key=RateLayer(rate_per_s=1, burst=5)
        ),
        time.clock,
    )
    decision = limiter.check("GET /x", "alice")
    assert decision.tightest is not None
    assert decision.tightest.layer == "key"
    assert decision.headers()["X-RateLimit-Limit"] == "5"
    assert decision.headers()["X-RateLimit-Remaining"] == "4"
    anonymous = limiter.check("GET /x", None)  # no key: no key layer
    assert anonymous.tightest is not None
    assert anonymous.tightest.layer == "total"


def test_each_key_and_each_endpoint_has_its_own_bucket_and_overrides_apply() -> None:
    """Alice spending her key layer leaves Bob's whole; an endpoint override replaces the
    per-endpoint default for that route only."""
    time = FakeTime()
    settings = _limits(
        per_key=RateLayer(rate_per_s=1, burst=1),
        per_endpoint=RateLayer(rate_per_s=1, burst=5),
        endpoints={"POST /v1/validate/batch": RateLayer(rate_per_s=1, burst=1)},
    )
    limiter = RateLimiter(settings, time.clock)
    assert limiter.check("GET /x", "alice").allowed
    assert not limiter.check("GET /x", "alice").allowed
    assert limiter.check("GET /x", "bob").allowed
    assert limiter.check("POST /v1/validate/batch", None).allowed
    assert not limiter.check("POST /v1/validate/batch", None).allowed
    assert limiter.check("POST /v1/validate", None).allowed


def test_no_layer_means_no_limit_and_no_headers() -> None:
    """With every layer off, requests pass and no rate-limit header is claimed."""
    limiter = RateLimiter(_limits(), FakeTime().clock)
    decision = limiter.check("GET /x", "alice")
    assert decision.allowed
    assert decision.headers() == {}


def test_an_endpoint_override_must_name_method_and_path() -> None:
    """A key that is not ``METHOD /path`` is a config error naming it."""
    with pytest.raises(ValidationError, match="validate/batch"):
        RateLimits.model_validate({"endpoints": {"/validate/batch": {"rate_per_s": 1, "burst": 1}}})


# --- signatures ----------------------------------------------------------------------------

SECRET = b"s3cret"


def test_the_signed_string_is_the_timestamp_a_full_stop_and_the_raw_body() -> None:
    """sign() is HMAC-SHA256 of exactly ``T.BODY``, hex (what the README tells clients)."""
    expected = hmac.new(SECRET, b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", b'{"a":1}') == expected


def test_a_signature_verifies_only_for_its_body_within_the_skew() -> None:
    """The right signature passes (in either case of hex); another body, a stale or a future
    timestamp, malformed or missing headers fail."""
    clock = FakeTime(start=1_700_000_000.0)
    check = SignatureCheck(SECRET, max_skew_s=300, clock=clock.clock)
    body = b'{"id":"1"}'
    good = sign(SECRET, "1700000000", body)
    assert check.verify("1700000000", good, body)
    assert check.verify("1700000000", good.upper(), body)
    assert not check.verify("1700000000", good, body + b" ")
    flipped = good[:-1] + ("1" if good[-1] == "0" else "0")
    assert not check.verify("1700000000", flipped, body)
    assert not check.verify("1700000000", "zz" * 32, body)
    assert not check.verify(None, good, body)
    assert not check.verify("1700000000", None, body)
    assert not check.verify("1700000000.5", good, body)
    clock.advance(301)
    assert not check.verify("1700000000", good, body)
    future = str(int(clock.now) + 301)
    assert not check.verify(future, sign(SECRET, future, body), body)


def test_signing_enabled_without_a_secret_is_a_config_error() -> None:
    """``signing.enabled`` asks for ``signing.secret``; an inline secret is refused."""
    with pytest.raises(ValidationError, match="enabled needs secret"):
        RequestSigning(enabled=True)
    with pytest.raises(ValidationError, match="not written inline"):
        RequestSigning.model_validate({"enabled": True, "secret": "plain"})


# --- API keys -------------------------------------------------------------------------------


def test_the_key_ring_names_keys_by_their_entry_or_their_hash() -> None:
    """Named and unnamed entries, commas, comments and blank lines; an unknown key is None."""
    alice, bob = hash_key("alice-key"), hash_key("bob-key")
    ring = KeyRing.parse(f"# our clients\nalice:{alice}\n\n{bob}, rotated:{hash_key('new')}\n", "t")
    assert ring.identify("alice-key") == "alice"
    assert ring.identify("bob-key") == f"key-{bob[:8]}"
    assert ring.identify("new") == "rotated"
    assert ring.identify("mallory") is None


def test_a_bad_key_file_entry_is_reported_by_position_never_by_content() -> None:
    """A plain key written where a hash belongs is a ConfigError that does not repeat it."""
    with pytest.raises(ConfigError, match="entry 2") as caught:
        KeyRing.parse(f"{hash_key('a')}\nsk_live_plainkey\n", "file keys.txt")
    assert "sk_live_plainkey" not in str(caught.value)
    with pytest.raises(ConfigError, match="repeats a hash"):
        KeyRing.parse(f"{hash_key('a')},{hash_key('a')}", "env KEYS")
    with pytest.raises(ConfigError, match="no entry"):
        KeyRing.parse("# nothing\n", "env KEYS")


def test_keys_are_taken_from_x_api_key_or_a_bearer_token() -> None:
    """X-API-Key first, then ``Authorization: Bearer``; other schemes are not a key."""
    assert presented_key(Headers({"x-api-key": " k1 "})) == "k1"
    assert presented_key(Headers({"authorization": "Bearer k2"})) == "k2"
    assert presented_key(Headers({"authorization": "bearer k3"})) == "k3"
    assert presented_key(Headers({"authorization": "Basic dTpw"})) is None
    assert presented_key(Headers({"authorization": "Bearer "})) is None
    assert presented_key(Headers({})) is None


def test_key_hashes_load_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ring comes from the named file or variable; auth off loads nothing; an unset
    variable is a ConfigError at start-up."""
    keys = tmp_path / "keys"
    keys.write_text(f"ci:{hash_key('k')}\n")
    from_file = load_key_ring(
        ApiKeys.model_validate({"enabled": True, "key_hashes": {"file": keys}})
    )
    assert from_file is not None
    assert from_file.identify("k") == "ci"
    monkeypatch.setenv("TEST_API_KEY_HASHES", hash_key("e"))
    from_env = ApiKeys.model_validate(
        {"enabled": True, "key_hashes": {"env": "TEST_API_KEY_HASHES"}}
    )
    ring = load_key_ring(from_env)
    assert ring is not None
    assert ring.identify("e") is not None
    assert load_key_ring(ApiKeys()) is None
    monkeypatch.delenv("TEST_API_KEY_HASHES")
    with pytest.raises(ConfigError, match="TEST_API_KEY_HASHES"):
        load_key_ring(from_env)
    with pytest.raises(ValidationError, match="enabled needs key_hashes"):
        ApiKeys(enabled=True)


# --- idempotency store ----------------------------------------------------------------------


def _store(time: FakeTime, **settings: float) -> IdempotencyStore:
    return IdempotencyStore(Idempotency.model_validate(settings), time.clock)


OK = StoredResponse(201, [(b"content-type", b"application/json")], b'{"ok":true}')


def test_a_completed_key_replays_its_response_and_refuses_another_body() -> None:
    """Same key and fingerprint: the stored response; another fingerprint: a mismatch,
    also while the first is still running; the same one meanwhile: in progress."""
    store = _store(FakeTime())
    key = ("alice", "k1")
    first = store.claim(key, "fp")
    assert first.seen is Seen.NEW
    assert store.claim(key, "fp").seen is Seen.IN_PROGRESS
    assert store.claim(key, "other").seen is Seen.MISMATCH
    store.complete(key, first, OK)
    again = store.claim(key, "fp")
    assert (again.seen, again.response) == (Seen.REPLAY, OK)
    assert store.claim(key, "other").seen is Seen.MISMATCH
    assert store.claim(("bob", "k1"), "other").seen is Seen.NEW  # callers' keys never meet


def test_a_released_key_runs_afresh() -> None:
    """A request that gave no answer worth keeping (5xx) frees its key for the retry."""
    store = _store(FakeTime())
    claim = store.claim(("", "k"), "fp")
    store.release(("", "k"), claim)
    assert store.claim(("", "k"), "fp").seen is Seen.NEW


def test_keys_expire_after_their_ttl() -> None:
    """A key is replayed until ttl_s after its first use, then forgotten."""
    time = FakeTime()
    store = _store(time, ttl_s=60)
    claim = store.claim(("", "k"), "fp")
    store.complete(("", "k"), claim, OK)
    time.advance(59)
    assert store.claim(("", "k"), "fp").seen is Seen.REPLAY
    time.advance(1)
    assert store.claim(("", "k"), "other").seen is Seen.NEW
    assert len(store) == 1


def test_the_store_forgets_the_oldest_past_its_entry_and_byte_bounds() -> None:
    """Past max_entries the oldest key goes; past max_stored_bytes the oldest responses go;
    a late completion of a forgotten claim does not overwrite the key's new claim."""
    store = _store(FakeTime(), max_entries=2, max_stored_bytes=2 * OK.size())
    claims = {name: store.claim(("", name), "fp") for name in ("a", "b", "c")}
    assert len(store) == 2
    assert store.claim(("", "a"), "other").seen is Seen.NEW  # "a" was forgotten
    store.complete(("", "a"), claims["a"], OK)  # the old claim: no effect on the new one
    assert store.claim(("", "a"), "fp").seen is Seen.MISMATCH
    big = _store(FakeTime(), max_stored_bytes=2 * OK.size())
    for name in ("x", "y", "z"):
        big.complete(("", name), big.claim(("", name), "fp"), OK)
    assert big.claim(("", "x"), "fp").seen is Seen.NEW
    assert big.claim(("", "z"), "fp").seen is Seen.REPLAY


def test_the_fingerprint_covers_method_path_query_and_body() -> None:
    """Changing any one of them changes the fingerprint."""
    scope = {"method": "POST", "path": "/v1/records", "query_string": b""}
    base = fingerprint(scope, b"{}")
    assert fingerprint(scope, b"{} ") != base
    assert fingerprint({**scope, "path": "/v1/validate"}, b"{}") != base
    assert fingerprint({**scope, "query_string": b"x=1"}, b"{}") != base
    assert fingerprint(dict(scope), b"{}") == base


# --- the error shape -------------------------------------------------------------------------


def test_validation_errors_name_the_field_and_never_echo_the_input() -> None:
    """Each problem becomes {code, message, field} with a dotted field; the input is gone."""
    errors = [
        {"type": "string_too_long", "loc": ("body", "data", "email"), "msg": "too long",
         "input": "x" * 500},
        {"type": "missing", "loc": ("body", "items", 3, "id"), "msg": "Field required",
         "input": None},
    ]  # fmt: skip
    problem = validation_problem(RequestValidationError(errors))
    assert (problem.status, problem.error) == (422, "request.invalid")
    assert [d.model_dump() for d in problem.details] == [
        {"code": "string_too_long", "message": "too long", "field": "data.email"},
        {"code": "missing", "message": "Field required", "field": "items[3].id"},
    ]


def test_http_exceptions_get_stable_codes_and_keep_their_headers() -> None:
    """404 is not_found, 405 method_not_allowed with Allow kept, others their phrase."""
    assert http_problem(HTTPException(404)).error == "not_found"
    allowed = http_problem(HTTPException(405, headers={"Allow": "POST"}))
    assert (allowed.error, allowed.headers) == ("method_not_allowed", {"Allow": "POST"})
    teapot = http_problem(HTTPException(400, detail="bad cursor"))
    assert (teapot.error, teapot.message) == ("bad_request", "bad cursor")


def test_the_protection_section_is_valid_with_no_keys_at_all() -> None:
    """ApiProtection() stands alone: auth and signing off, limits and idempotency on; an open
    path must be a path."""
    settings = ApiProtection()
    assert not settings.auth.enabled
    assert not settings.signing.enabled
    assert settings.idempotency.enabled
    assert settings.rate_limits.total is not None
    with pytest.raises(ValidationError, match="starting with /"):
        ApiProtection(open_paths=("healthz",))


def test_shared_request_state_fails_loudly_when_its_guard_did_not_run() -> None:
    """Reading the raw body or the caller before their guards ran raises, naming the guard,
    instead of answering with a default that would hide a wiring mistake."""
    scope = {"type": "http"}
    with pytest.raises(RuntimeError, match="body-limit guard"):
        context.raw_body(scope)
    with pytest.raises(RuntimeError, match="access guard"):
        context.caller(scope)
    context.set_caller(scope, None)
    assert context.caller(scope) is None
