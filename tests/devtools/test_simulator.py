"""Tests of the upstream simulator: a real server on 127.0.0.1, a real aiohttp client."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from devtools import simulator
from devtools.simulator import RunningSimulator, SimulatorStats, start_simulator
from devtools.simulator import stats as simulator_stats
from devtools.simulator.verdicts import (
    FaultPlanner,
    SettingsError,
    SimulatorSettings,
    email_verdict,
    sanctions_hit,
    vat_company_name,
    vat_registered,
)

EMAIL = "/v1/email/verify"
VAT = "/v1/vat/check"
SANCTIONS = "/v1/sanctions/screen"
WALL_START_S = 1_700_000_000.25


class Harness:
    """Starts simulators with a hand-driven clock and wall clock and a recording sleep.

    With ``sleep_advances_clock`` set, each sleep also moves the clock on by its duration.
    """

    def __init__(self) -> None:
        self.now_s = 0.0
        self.wall_s = WALL_START_S
        self.sleeps_s: list[float] = []
        self.sleep_advances_clock = False
        self._started: list[RunningSimulator] = []

    def clock(self) -> float:
        return self.now_s

    def wall_clock(self) -> float:
        return self.wall_s

    async def sleep(self, duration_s: float) -> None:
        self.sleeps_s.append(duration_s)
        if self.sleep_advances_clock:
            self.now_s += duration_s

    async def start(self, settings: SimulatorSettings | None = None) -> RunningSimulator:
        sim = await start_simulator(
            settings or SimulatorSettings(),
            clock=self.clock,
            wall_clock=self.wall_clock,
            sleep=self.sleep,
        )
        self._started.append(sim)
        return sim

    async def close(self) -> None:
        for sim in self._started:
            await sim.close()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """A harness that closes every simulator it started."""
    made = Harness()
    yield made
    await made.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real aiohttp client session."""
    async with aiohttp.ClientSession() as client:
        yield client


async def call(
    session: aiohttp.ClientSession,
    url: str,
    body: object = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """Send one request and return (status, decoded JSON or text body, response)."""
    async with session.request(method, url, json=body, headers=headers) as resp:
        is_json = resp.content_type == "application/json"
        return resp.status, await resp.json() if is_json else await resp.text(), resp


async def stats(session: aiohttp.ClientSession, sim: RunningSimulator) -> Any:
    """Return the simulator's ``/_stats`` document."""
    return (await call(session, sim.url + "/_stats", method="GET"))[1]


async def request_log(
    session: aiohttp.ClientSession, sim: RunningSimulator, path: str | None = None
) -> Any:
    """Return the simulator's ``/_requests`` document, for one path if ``path`` is given."""
    query = "" if path is None else "?" + urlencode({"path": path})
    return (await call(session, sim.url + "/_requests" + query, method="GET"))[1]


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("alice@example.com", (True, None)),
        ("Bounce.42@example.com", (False, "mailbox_unavailable")),
        ("bounce@nowhere.invalid", (False, "mailbox_unavailable")),
        ("alice@Nowhere.INVALID", (False, "domain_not_found")),
        ("alice@invalid.example.com", (True, None)),
        ("bouncer-without-at", (False, "mailbox_unavailable")),
    ],
)
def test_email_verdict_follows_the_documented_rules(
    email: str, expected: tuple[bool, str | None]
) -> None:
    """Bounce local parts, then .invalid domains, are undeliverable; all else is deliverable."""
    assert email_verdict(email) == expected


def test_vat_rules_unregister_ids_ending_000_and_name_the_rest() -> None:
    """A stripped id ending in 000 is unregistered; others get a deterministic name."""
    assert not vat_registered(" DE123000 ")
    assert vat_company_name("DE123000") is None
    assert vat_registered("DE123001")
    assert vat_company_name(" DE123001 ") == "Registered Company DE123001"


@pytest.mark.parametrize(
    ("subject", "hit"),
    [("ACME Sanctioned Ltd", True), ("Jane DEAD", True), ("acct 16666", True), ("Jane", False)],
)
def test_sanctions_hit_on_sanctioned_dead_or_6666(subject: str, hit: bool) -> None:
    """Subjects containing 'sanctioned' or ending with 'dead' or '6666' are hits."""
    assert sanctions_hit(subject) is hit


async def test_endpoints_answer_their_verdicts(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Each API endpoint echoes its input and answers the verdict of the pure rules."""
    sim = await harness.start()
    assert (await call(session, sim.url + EMAIL, {"email": "x@y.invalid"}))[:2] == (
        200,
        {"email": "x@y.invalid", "deliverable": False, "reason": "domain_not_found"},
    )
    assert (await call(session, sim.url + VAT, {"vat_id": "FR1"}))[:2] == (
        200,
        {"vat_id": "FR1", "registered": True, "name": "Registered Company FR1"},
    )
    assert (await call(session, sim.url + SANCTIONS, {"subject": "Bob 6666"}))[:2] == (
        200,
        {"subject": "Bob 6666", "hit": True, "list": "SIM-OFAC"},
    )


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"{}", b'{"email": 5}', b"\xff\xfe\x00"])
async def test_malformed_bodies_get_400_with_a_reason(
    harness: Harness, session: aiohttp.ClientSession, raw: bytes
) -> None:
    """A body that is not a JSON object with a string field is answered 400 with an error."""
    sim = await harness.start()
    async with session.post(sim.url + EMAIL, data=raw) as resp:
        assert resp.status == 400
        assert isinstance((await resp.json())["error"], str)


async def test_healthz_and_control_paths_are_not_counted(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """/healthz answers ok and no control path shows up in the stats."""
    sim = await harness.start()
    assert (await call(session, sim.url + "/healthz", method="GET"))[:2] == (200, {"status": "ok"})
    await call(session, sim.url + "/_control", method="GET")
    await call(session, sim.url + "/_reset")
    assert await request_log(session, sim) == {"by_path": {}}
    body = await stats(session, sim)
    assert body["requests_total"] == 0
    assert body["by_endpoint"] == {}


async def test_control_changes_settings_atomically_and_rejects_bad_values(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """POST /_control applies valid changes; a bad change set is 400 and changes nothing."""
    sim = await harness.start()
    status, body, _ = await call(session, sim.url + "/_control", {"latency_ms": 7, "seed": 3})
    assert status == 200
    assert (body["latency_ms"], body["seed"]) == (7.0, 3)
    for bad in ({"error_rate": 0.5, "latency_ms": "x"}, {"nope": 1}, {"error_rate": 2}, [1]):
        assert (await call(session, sim.url + "/_control", bad))[0] == 400
    current = (await call(session, sim.url + "/_control", method="GET"))[1]
    assert current == SimulatorSettings(latency_ms=7, seed=3).to_json()


def test_settings_reject_wrong_types_and_ranges() -> None:
    """Settings check JSON types strictly (no bools as numbers) and reject out-of-range values."""
    for bad in (
        {"latency_ms": True},
        {"rate_limit_burst": 1.5},
        {"timeout_rate": -0.1},
        {"latency_ms": float("nan")},
        {"outage_windows": [[5, 1]]},
        {"outage_windows": ["5-9"]},
        {"outage_mode": "maybe"},
    ):
        with pytest.raises(SettingsError):
            SimulatorSettings().with_changes(bad)
    windows = SimulatorSettings().with_changes({"outage_windows": ["1:2.5", [3, 4]]})
    assert windows.outage_windows == ((1.0, 2.5), (3.0, 4.0))


async def test_error_injection_answers_503_injected(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """With error_rate 1 every API request is answered 503 {"error": "injected"}."""
    sim = await harness.start(SimulatorSettings(error_rate=1.0))
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[:2] == (503, {"error": "injected"})


async def test_timeout_injection_hangs_hang_s_then_answers_504(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """A timeout-injected request sleeps hang_s and is then answered 504."""
    sim = await harness.start(SimulatorSettings(timeout_rate=1.0, hang_s=12.5))
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[:2] == (504, {"error": "timeout"})
    assert harness.sleeps_s == [12.5]


async def test_fixed_latency_sleeps_latency_ms_before_answering(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Fixed latency awaits the sleep for exactly latency_ms before the verdict."""
    sim = await harness.start(SimulatorSettings(latency_ms=5.0))
    assert (await call(session, sim.url + EMAIL, {"email": "a@b.c"}))[0] == 200
    assert harness.sleeps_s == [0.005]


def test_random_latency_draws_follow_their_distribution() -> None:
    """Uniform draws stay within 0..2x latency_ms and exponential draws average latency_ms."""
    for distribution in ("uniform", "exponential"):
        settings = SimulatorSettings().with_changes(
            {"latency_ms": 10, "latency_distribution": distribution}
        )
        planner = FaultPlanner(settings, clock=lambda: 0.0, rng=random.Random(7))
        draws_s = [planner.latency_s() for _ in range(4_000)]
        assert 0.009 < sum(draws_s) / len(draws_s) < 0.011
        if distribution == "uniform":
            assert max(draws_s) <= 0.020


async def test_same_seed_gives_the_same_fault_sequence(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Two simulators seeded alike inject errors on the same requests."""
    runs = []
    for _ in range(2):
        sim = await harness.start(SimulatorSettings(error_rate=0.5, seed=11))
        runs.append([(await call(session, sim.url + VAT, {"vat_id": "1"}))[0] for _ in range(20)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}


async def test_rate_limit_is_a_token_bucket_per_path_with_retry_after_seconds(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Past the burst a path gets 429 with Retry-After seconds; other paths and refills pass."""
    sim = await harness.start(SimulatorSettings(rate_limit_rps=2, rate_limit_burst=2))
    statuses = [(await call(session, sim.url + VAT, {"vat_id": "1"}))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    status, body, resp = await call(session, sim.url + VAT, {"vat_id": "1"})
    assert (status, body, resp.headers["Retry-After"]) == (429, {"error": "rate_limited"}, "1")
    assert (await call(session, sim.url + EMAIL, {"email": "a@b.c"}))[0] == 200
    harness.now_s += 0.5  # one token at 2 rps
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[0] == 200
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[0] == 429


async def test_retry_after_http_date_is_now_plus_retry_after_s(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """The http-date Retry-After is an IMF-fixdate no earlier than now + retry_after_s."""
    settings = SimulatorSettings(rate_limit_rps=1, retry_after_s=30, retry_after_format="http-date")
    sim = await harness.start(settings)
    await call(session, sim.url + VAT, {"vat_id": "1"})
    _, _, resp = await call(session, sim.url + VAT, {"vat_id": "1"})
    header = resp.headers["Retry-After"]
    assert header.endswith(" GMT")
    assert parsedate_to_datetime(header).timestamp() == 1_700_000_031


async def test_outage_windows_answer_503_between_start_and_end(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Inside [start, end) seconds since start every API call is 503 outage; outside it is not."""
    sim = await harness.start(SimulatorSettings(outage_windows=((10.0, 20.0),)))
    seen = []
    for now_s in (9.9, 10.0, 19.9, 20.0):
        harness.now_s = now_s
        seen.append((await call(session, sim.url + EMAIL, {"email": "a@b.c"}))[:2])
    outage = (503, {"error": "outage"})
    assert [answer == outage for answer in seen] == [False, True, True, False]


async def test_outage_for_s_starts_an_outage_now_and_zero_ends_it(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """POST /_control {"outage_for_s": n} makes the next n seconds an outage."""
    sim = await harness.start()
    harness.now_s = 100.0
    await call(session, sim.url + "/_control", {"outage_for_s": 20})
    harness.now_s = 119.0
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[0] == 503
    harness.now_s = 120.0
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[0] == 200
    sim.update_settings({"outage_for_s": 5})
    sim.update_settings({"outage_for_s": 0})
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[0] == 200


async def test_refuse_outage_drops_the_connection_and_the_server_survives(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """In refuse mode the client sees the server disconnect; after the outage it answers."""
    sim = await harness.start(SimulatorSettings(outage_mode="refuse"))
    sim.update_settings({"outage_for_s": 10})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(session, sim.url + SANCTIONS, {"subject": "x"})
    harness.now_s = 10.0
    assert (await call(session, sim.url + SANCTIONS, {"subject": "x"}))[0] == 200
    assert (await stats(session, sim))["by_endpoint"][SANCTIONS] == {"refused": 1, "200": 1}


async def test_faults_apply_in_order_outage_rate_limit_timeout_error(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """An outage beats a rate limit, a rate limit beats timeouts, timeouts beat errors."""
    settings = SimulatorSettings(rate_limit_rps=1, timeout_rate=1.0, error_rate=1.0)
    sim = await harness.start(settings)
    sim.update_settings({"outage_for_s": 1})
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[0] == 503  # outage
    harness.now_s = 1.0
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[0] == 504  # took the token
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[0] == 429
    sim.update_settings({"timeout_rate": 0.0, "rate_limit_rps": 0})
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[:2] == (503, {"error": "injected"})


async def test_stats_count_requests_keys_auth_statuses_and_seconds(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """/_stats reports per-path statuses, idempotency keys, auth, traceparents, per-second
    counts and times."""
    sim = await harness.start(SimulatorSettings(rate_limit_rps=1))
    await call(session, sim.url + VAT, {"vat_id": "1"}, headers={"Idempotency-Key": "k1"})
    harness.wall_s += 1.0
    await call(session, sim.url + VAT, {"vat_id": "1"}, headers={"Idempotency-Key": "k1"})
    traced = {"Authorization": "Bearer t", "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    await call(session, sim.url + EMAIL, {"email": "a"}, headers=traced)
    await call(
        session, sim.url + "/nowhere", {}, headers={"x-api-key": "s", "Idempotency-Key": "k2"}
    )
    assert await stats(session, sim) == {
        "requests_total": 4,
        "by_endpoint": {VAT: {"200": 1, "429": 1}, EMAIL: {"200": 1}, "other": {"404": 1}},
        "in_flight": 0,
        "max_in_flight": 1,
        "idempotency_keys_distinct": 2,
        "idempotency_keys_capped": False,
        "requests_without_idempotency_key": 1,
        "authorized_requests": 2,
        "traced_requests": 1,
        "by_second": {
            VAT: {"1700000000": 1, "1700000001": 1},
            EMAIL: {"1700000001": 1},
            "other": {"1700000001": 1},
        },
        "first_request_at": WALL_START_S,
        "last_request_at": WALL_START_S + 1.0,
        "last_429_at": {VAT: WALL_START_S + 1.0},
    }


async def test_reset_zeroes_stats_and_the_request_log_but_keeps_settings(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """POST /_reset empties the stats and the request log and leaves the settings alone."""
    sim = await harness.start(SimulatorSettings(error_rate=1.0))
    await call(session, sim.url + VAT, {"vat_id": "1"}, headers={"Idempotency-Key": "k"})
    assert (await request_log(session, sim, VAT))["requests"] == [[0.0, 503]]
    assert (await call(session, sim.url + "/_reset"))[0] == 200
    assert await request_log(session, sim) == {"by_path": {}}
    assert await request_log(session, sim, VAT) == {"path": VAT, "requests": []}
    body = await stats(session, sim)
    assert (body["requests_total"], body["idempotency_keys_distinct"]) == (0, 0)
    assert (body["by_endpoint"], body["by_second"], body["first_request_at"]) == ({}, {}, None)
    assert sim.state.settings.error_rate == 1.0


async def test_in_flight_and_max_in_flight_track_concurrent_requests(
    session: aiohttp.ClientSession,
) -> None:
    """Requests held in their latency sleep show as in flight; the maximum stays afterwards."""
    arrived, release = asyncio.Event(), asyncio.Event()
    waiting = 0

    async def gated_sleep(_duration_s: float) -> None:
        nonlocal waiting
        waiting += 1
        if waiting == 3:
            arrived.set()
        await release.wait()

    sim = await start_simulator(SimulatorSettings(latency_ms=1), sleep=gated_sleep)
    try:
        calls = [asyncio.create_task(call(session, sim.url + VAT, {"vat_id": "1"})) for _ in "abc"]
        await asyncio.wait_for(arrived.wait(), 5)
        during = await stats(session, sim)
        release.set()
        await asyncio.gather(*calls)
        after = await stats(session, sim)
    finally:
        await sim.close()
    assert (during["in_flight"], during["max_in_flight"]) == (3, 3)
    assert (after["in_flight"], after["max_in_flight"]) == (0, 3)


def test_by_second_keeps_only_the_last_3600_seconds() -> None:
    """Per-path per-second counts older than the 3,600 s window are evicted."""
    counts = SimulatorStats()
    for second in range(5_000):
        counts.started(VAT, {}, float(second), float(second))
    by_second: Any = counts.to_json()["by_second"]
    assert len(by_second[VAT]) == 3_600
    assert min(int(second) for second in by_second[VAT]) == 5_000 - 3_600


def test_idempotency_keys_stop_growing_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the cap new keys are not stored and the stats flag the count as capped."""
    monkeypatch.setattr(simulator_stats, "IDEMPOTENCY_KEYS_CAP", 2)
    counts = SimulatorStats()
    for key in ("a", "b", "a", "c"):
        counts.started(VAT, {"Idempotency-Key": key}, 0.0, 0.0)
    body = counts.to_json()
    assert (body["idempotency_keys_distinct"], body["idempotency_keys_capped"]) == (2, True)


async def test_request_log_keeps_clock_arrival_times_and_statuses(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """The log holds arrival seconds since start, before latency, and 200/429/503/refused."""
    harness.now_s, harness.sleep_advances_clock = 100.0, True
    sim = await harness.start(SimulatorSettings(rate_limit_rps=1, latency_ms=250))
    harness.now_s = 101.0
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[0] == 200  # now 101.25
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[0] == 429
    harness.now_s = 103.0
    sim.update_settings({"error_rate": 1.0})
    assert (await call(session, sim.url + VAT, {"vat_id": "1"}))[0] == 503
    harness.now_s = 105.5
    sim.update_settings({"outage_mode": "refuse", "outage_for_s": 1})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(session, sim.url + VAT, {"vat_id": "1"})
    assert await request_log(session, sim, VAT) == {
        "path": VAT,
        "requests": [[1.0, 200], [1.25, 429], [3.0, 503], [5.5, "refused"]],
    }


async def test_request_log_filters_by_path_and_skips_control_paths(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """?path= gives one path's log; without it every counted path, none of the control paths."""
    sim = await harness.start()
    await call(session, sim.url + VAT, {"vat_id": "1"})
    harness.now_s = 2.0
    await call(session, sim.url + EMAIL, {"email": "a@b.c"})
    await call(session, sim.url + "/nowhere", {})
    await stats(session, sim)
    assert await request_log(session, sim, EMAIL) == {"path": EMAIL, "requests": [[2.0, 200]]}
    assert await request_log(session, sim, "other") == {"path": "other", "requests": [[2.0, 404]]}
    assert await request_log(session, sim) == {
        "by_path": {VAT: [[0.0, 200]], EMAIL: [[2.0, 200]], "other": [[2.0, 404]]}
    }


def test_request_log_keeps_the_latest_entries_per_path_up_to_its_bound() -> None:
    """Past log_per_path entries a path's log drops its oldest; other paths keep their own."""
    counts = SimulatorStats(log_per_path=3)
    for arrival_s in range(5):
        counts.finished(counts.started(VAT, {}, 0.0, float(arrival_s)), 200, 0.0)
    counts.finished(counts.started(EMAIL, {}, 0.0, 9.0), 429, 0.0)
    assert counts.requests_json() == {
        "by_path": {VAT: [[2.0, 200], [3.0, 200], [4.0, 200]], EMAIL: [[9.0, 429]]}
    }
    with pytest.raises(ValueError, match="log_per_path"):
        SimulatorStats(log_per_path=0)


def test_request_log_shows_null_status_until_the_request_finishes() -> None:
    """A request in flight, or cancelled, is logged at its arrival with a null status."""
    counts = SimulatorStats()
    in_flight = counts.started(VAT, {}, 0.0, 1.5)
    cancelled = counts.started(VAT, {}, 0.0, 2.5)
    assert counts.requests_json(VAT) == {"path": VAT, "requests": [[1.5, None], [2.5, None]]}
    counts.finished(in_flight, 200, 0.0)
    counts.finished(cancelled, None, 0.0)
    assert counts.requests_json(VAT) == {"path": VAT, "requests": [[1.5, 200], [2.5, None]]}


async def test_close_cancels_hanging_requests_instead_of_waiting_hang_s(
    session: aiohttp.ClientSession,
) -> None:
    """Closing with a request hanging for 30 s returns at once and disconnects the client."""
    hanging = asyncio.Event()

    async def real_sleep(duration_s: float) -> None:
        hanging.set()
        await asyncio.sleep(duration_s)

    sim = await start_simulator(SimulatorSettings(timeout_rate=1.0), sleep=real_sleep)
    request = asyncio.create_task(call(session, sim.url + VAT, {"vat_id": "1"}))
    await asyncio.wait_for(hanging.wait(), 5)
    started_s = time.monotonic()
    await sim.close()
    assert time.monotonic() - started_s < 2.0
    with pytest.raises(aiohttp.ClientError):
        await request


async def test_start_simulator_refuses_any_host_but_loopback() -> None:
    """The simulator will not listen anywhere but 127.0.0.1."""
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        await start_simulator(SimulatorSettings(), host="0.0.0.0")  # the point


def test_cli_rejects_out_of_range_flags() -> None:
    """A flag value the settings reject ends the CLI with a usage error."""
    with pytest.raises(SystemExit) as exited:
        simulator.main(["--error-rate", "1.5"])
    assert exited.value.code == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_cli_prints_its_url_serves_and_exits_cleanly_on_signal(
    session: aiohttp.ClientSession, signum: signal.Signals
) -> None:
    """The CLI prints one listening line with its URL, serves it, and exits 0 on the signal."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "devtools.simulator", "--port", "0"),
        *("--latency-ms", "1", "--outage-window", "100:200"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        event = json.loads(line)
        assert event["event"] == "simulator.listening"
        assert event["url"].startswith("http://127.0.0.1:")
        status, body, _ = await call(session, event["url"] + "/_control", method="GET")
        assert (status, body["latency_ms"], body["outage_windows"]) == (200, 1.0, [[100, 200]])
        proc.send_signal(signum)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("sku", "status", "available", "known"),
    [
        ("MUG-BLUE", 200, 100, True),
        ("LOW-MUG", 200, 1, True),
        ("OOS-MUG", 200, 0, True),
        ("GONE-MUG", 200, 0, False),
        ("BROKEN-MUG", 503, None, None),
    ],
)
async def test_the_stock_endpoint_answers_per_sku_under_one_route(
    harness: Harness,
    session: aiohttp.ClientSession,
    sku: str,
    status: int,
    available: int | None,
    known: bool | None,
) -> None:
    """GET /v1/stock/{sku} follows the SKU rules; statistics count the route, not the SKU."""
    sim = await harness.start()
    got, body, _ = await call(session, f"{sim.url}/v1/stock/{sku}", method="GET")
    assert got == status
    if status == 200:
        assert body["stock"]["available"] == available
        assert body["known"] is known
    assert "/v1/stock/{sku}" in json.dumps(await stats(session, sim))


async def test_batch_endpoint_answers_each_item_in_order_and_a_bad_item_in_place(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """A batch answers every item as the single endpoint would, in order, a bad item 400."""
    sim = await harness.start()
    items = [{"email": "a@b.c"}, {"mail": 1}, {"email": "bounce@b.c"}]
    status, body, _ = await call(session, sim.url + EMAIL + "/batch", {"items": items})
    assert status == 200
    assert body == {"results": [
        {"email": "a@b.c", "deliverable": True, "reason": None, "status": 200},
        {"status": 400, "error": "field 'email' must be a string"},
        {"email": "bounce@b.c", "deliverable": False, "reason": "mailbox_unavailable",
         "status": 200},
    ]}  # fmt: skip


async def test_batch_over_max_items_gets_413_and_an_empty_one_400(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """More items than batch_max_items is 413; no items (or no list) is 400."""
    sim = await harness.start(SimulatorSettings(batch_max_items=2))
    url = sim.url + VAT + "/batch"
    assert (await call(session, url, {"items": [{"vat_id": "1"}] * 3}))[0] == 413
    assert (await call(session, url, {"items": [{"vat_id": "1"}] * 2}))[0] == 200
    assert (await call(session, url, {"items": []}))[0] == 400
    assert (await call(session, url, [{"vat_id": "1"}]))[0] == 400


async def test_a_batch_is_one_request_for_the_rate_limit_and_latency(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """A batch of 50 takes one token and one latency draw, and is counted as one request."""
    sim = await harness.start(SimulatorSettings(rate_limit_rps=1, latency_ms=5.0))
    items = {"items": [{"email": f"u{i}@b.c"} for i in range(50)]}
    assert (await call(session, sim.url + EMAIL + "/batch", items))[0] == 200
    assert (await call(session, sim.url + EMAIL + "/batch", items))[0] == 429
    assert harness.sleeps_s == [0.005]
    counted = (await stats(session, sim))["by_endpoint"][EMAIL + "/batch"]
    assert counted == {"200": 1, "429": 1}
