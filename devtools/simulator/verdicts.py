"""The upstream simulator's decisions: its endpoints, verdicts, settings and fault plan.

Nothing here does I/O or imports aiohttp: randomness and time come in as a
``random.Random`` and a monotonic ``clock``, so the demo and the tests can compute every
answer in advance. ``devtools.simulator`` serves these decisions over HTTP.

Endpoints and verdict rules (JSON in and out; a body that is not a JSON object with the
field as a string gets 400 ``{"error": "<why>"}``):

- ``POST /v1/email/verify`` ``{"email"}`` -> ``{"email", "deliverable", "reason"}``:
  undeliverable iff the local part (before the last ``@``, lower-cased) starts with
  ``bounce`` (reason ``mailbox_unavailable``) or else the domain (lower-cased) ends with
  ``.invalid`` (reason ``domain_not_found``). An address without ``@`` is all local part.
- ``POST /v1/vat/check`` ``{"vat_id"}`` -> ``{"vat_id", "registered", "name"}``: not
  registered iff the stripped id ends with ``000``; else named
  ``"Registered Company <stripped id>"``.
- ``POST /v1/sanctions/screen`` ``{"subject"}`` -> ``{"subject", "hit", "list"}``: a hit
  on list ``SIM-OFAC`` iff the lower-cased subject contains ``sanctioned``, or ends with
  ``dead`` or ``6666``.
- ``GET /v1/stock/{sku}`` (no body) -> ``{"sku", "known", "stock": {"available",
  "warehouse"}}``: SKUs starting ``OOS-`` have 0 available, ``LOW-`` 1, ``GONE-`` are not
  known (0 available); ``BROKEN-`` answers 503 ``{"error": "stock backend down"}`` every
  time (a dependency that keeps failing); every other SKU has 100. Faults, rate limits and
  statistics count every SKU under the one route ``/v1/stock/{sku}``.
- ``POST <path>/batch`` for each POST endpoint above (``/v1/email/verify/batch``, ...):
  ``{"items": [<body>, ...]}`` -> ``{"results": [<answer> + {"status": 200}, ...]}`` in item
  order, a malformed item answered ``{"status": 400, "error"}`` in its place; more than
  ``batch_max_items`` items get 413, an empty or missing list 400 (``devtools.simulator.batch``).
  A batch is one request for faults, latency and the rate limit, like real batch APIs.

Fault plan, per API request in this order, the first that applies wins: outage (503
``{"error": "outage"}``, or the connection dropped if ``outage_mode`` is ``refuse``), rate
limit (a token bucket per path; 429 ``{"error": "rate_limited"}`` with ``Retry-After``),
timeout injection (hang ``hang_s``, then 504 ``{"error": "timeout"}``), error injection
(503 ``{"error": "injected"}``); a request with no fault waits the latency draw, then
gets its verdict.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Final, Literal

EMAIL_PATH: Final = "/v1/email/verify"
VAT_PATH: Final = "/v1/vat/check"
SANCTIONS_PATH: Final = "/v1/sanctions/screen"
STOCK_ROUTE: Final = "/v1/stock/{sku}"
STOCK_PREFIX: Final = "/v1/stock/"
BATCH_SUFFIX: Final = "/batch"
STOCK_WAREHOUSE: Final = "SIM-1"
SANCTIONS_LIST_NAME: Final = "SIM-OFAC"

LatencyDistribution = Literal["fixed", "uniform", "exponential"]
RetryAfterFormat = Literal["seconds", "http-date"]
OutageMode = Literal["503", "refuse"]
LATENCY_DISTRIBUTIONS: Final = ("fixed", "uniform", "exponential")
RETRY_AFTER_FORMATS: Final = ("seconds", "http-date")
OUTAGE_MODES: Final = ("503", "refuse")


class SettingsError(ValueError):
    """A simulator setting is missing, of the wrong type, or out of range."""


class MalformedRequestError(ValueError):
    """A request body is not a JSON object with the required string field."""


# --- verdict rules -----------------------------------------------------------------------


def email_verdict(email: str) -> tuple[bool, str | None]:
    """Return ``(deliverable, reason)`` for an e-mail address; reason is None if deliverable."""
    local, at, domain = email.rpartition("@")
    if not at:
        local, domain = domain, ""
    if local.lower().startswith("bounce"):
        return False, "mailbox_unavailable"
    if domain.lower().endswith(".invalid"):
        return False, "domain_not_found"
    return True, None


def vat_registered(vat_id: str) -> bool:
    """Return whether a VAT id counts as registered (it does unless it ends with ``000``)."""
    return not vat_id.strip().endswith("000")


def vat_company_name(vat_id: str) -> str | None:
    """Return the made-up company name of a registered VAT id, or None if unregistered."""
    return f"Registered Company {vat_id.strip()}" if vat_registered(vat_id) else None


def sanctions_hit(subject: str) -> bool:
    """Return whether a subject is on the simulated sanctions list."""
    lowered = subject.lower()
    return "sanctioned" in lowered or lowered.endswith(("dead", "6666"))


def _string_field(body: object, field: str) -> str:
    if not isinstance(body, dict):
        raise MalformedRequestError("body must be a JSON object")
    value = body.get(field)
    if not isinstance(value, str):
        raise MalformedRequestError(f"field {field!r} must be a string")
    return value


def answer_email(body: object) -> dict[str, object]:
    """Build the ``/v1/email/verify`` answer for a decoded JSON body."""
    email = _string_field(body, "email")
    deliverable, reason = email_verdict(email)
    return {"email": email, "deliverable": deliverable, "reason": reason}


def answer_vat(body: object) -> dict[str, object]:
    """Build the ``/v1/vat/check`` answer for a decoded JSON body."""
    vat_id = _string_field(body, "vat_id")
    return {
        "vat_id": vat_id,
        "registered": vat_registered(vat_id),
        "name": vat_company_name(vat_id),
    }


def answer_sanctions(body: object) -> dict[str, object]:
    """Build the ``/v1/sanctions/screen`` answer for a decoded JSON body."""
    subject = _string_field(body, "subject")
    hit = sanctions_hit(subject)
    return {"subject": subject, "hit": hit, "list": SANCTIONS_LIST_NAME if hit else None}


def answer_stock(sku: str) -> tuple[int, dict[str, object]]:
    """The ``/v1/stock/{sku}`` answer: HTTP status and JSON body."""
    if sku.startswith("BROKEN-"):
        return 503, {"error": "stock backend down"}
    known = not sku.startswith("GONE-")
    available = 0 if sku.startswith(("OOS-", "GONE-")) else 1 if sku.startswith("LOW-") else 100
    return 200, {
        "sku": sku,
        "known": known,
        "stock": {"available": available, "warehouse": STOCK_WAREHOUSE},
    }


def api_route(path: str) -> str | None:
    """The API route a request path belongs to (faults and statistics are per route)."""
    if path in ANSWERS or (path.endswith(BATCH_SUFFIX) and path[: -len(BATCH_SUFFIX)] in ANSWERS):
        return path
    if path.startswith(STOCK_PREFIX) and len(path) > len(STOCK_PREFIX):
        return STOCK_ROUTE
    return None


ANSWERS: Final[Mapping[str, Callable[[object], dict[str, object]]]] = {
    EMAIL_PATH: answer_email,
    VAT_PATH: answer_vat,
    SANCTIONS_PATH: answer_sanctions,
}


# --- settings ----------------------------------------------------------------------------


def _as_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number")
    return float(value)


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{name} must be an integer")
    return value


def _as_seed(name: str, value: object) -> int | None:
    return None if value is None else _as_int(name, value)


def _as_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise SettingsError(f"{name} must be a string")
    return value


def _window_text(text: str) -> list[float]:
    """Parse the CLI form ``START_S:END_S`` of an outage window."""
    start, _, end = text.partition(":")
    try:
        return [float(start), float(end)]
    except ValueError:
        raise SettingsError(f"outage window {text!r} is not START_S:END_S") from None


def _as_windows(name: str, value: object) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list | tuple):
        raise SettingsError(f"{name} must be a list of [start_s, end_s] pairs")
    windows: list[tuple[float, float]] = []
    for item in value:
        window = _window_text(item) if isinstance(item, str) else item
        if not isinstance(window, list | tuple) or len(window) != 2:
            raise SettingsError(f"{name} must be a list of [start_s, end_s] pairs")
        windows.append((_as_float(name, window[0]), _as_float(name, window[1])))
    return tuple(windows)


_FIELD_PARSERS: Final[Mapping[str, Callable[[str, object], Any]]] = {
    "latency_ms": _as_float,
    "latency_distribution": _as_str,
    "error_rate": _as_float,
    "timeout_rate": _as_float,
    "hang_s": _as_float,
    "rate_limit_rps": _as_float,
    "rate_limit_burst": _as_int,
    "retry_after_s": _as_int,
    "retry_after_format": _as_str,
    "outage_windows": _as_windows,
    "outage_mode": _as_str,
    "batch_max_items": _as_int,
    "seed": _as_seed,
}


@dataclasses.dataclass(frozen=True)
class SimulatorSettings:
    """The simulator's knobs; replaced as a whole (never mutated) when changed at runtime.

    Attributes:
        latency_ms: Delay before answering; the mean for the random distributions.
        latency_distribution: ``fixed``, ``uniform`` (0 to 2x latency_ms) or ``exponential``.
        error_rate: Share (0..1) of requests answered 503 ``{"error": "injected"}``.
        timeout_rate: Share (0..1) of requests that hang for ``hang_s``, then answer 504.
        hang_s: How long a timeout-injected request hangs.
        rate_limit_rps: Token refill rate per endpoint path; 0 turns rate limiting off.
        rate_limit_burst: Token bucket capacity (requests allowed back to back).
        retry_after_s: Value of the ``Retry-After`` header on 429 answers.
        retry_after_format: ``seconds`` or ``http-date`` (IMF-fixdate of now + retry_after_s).
        outage_windows: ``(start_s, end_s)`` pairs, seconds since start, end exclusive.
        outage_mode: ``503`` answers ``{"error": "outage"}``; ``refuse`` drops the connection.
        batch_max_items: Items one batch request may hold; more get 413.
        seed: Seed of the simulator's own random generator; None seeds from the OS.
    """

    latency_ms: float = 0.0
    latency_distribution: LatencyDistribution = "fixed"
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    hang_s: float = 30.0
    rate_limit_rps: float = 0.0
    rate_limit_burst: int = 1
    retry_after_s: int = 1
    retry_after_format: RetryAfterFormat = "seconds"
    outage_windows: tuple[tuple[float, float], ...] = ()
    outage_mode: OutageMode = "503"
    batch_max_items: int = 100
    seed: int | None = None

    def __post_init__(self) -> None:
        """Reject out-of-range values, so a bad setting fails where it is made."""
        checks = [
            (self.latency_ms >= 0, "latency_ms must be >= 0"),
            (self.latency_distribution in LATENCY_DISTRIBUTIONS, "unknown latency_distribution"),
            (0 <= self.error_rate <= 1, "error_rate must be within 0..1"),
            (0 <= self.timeout_rate <= 1, "timeout_rate must be within 0..1"),
            (self.hang_s >= 0, "hang_s must be >= 0"),
            (self.rate_limit_rps >= 0, "rate_limit_rps must be >= 0"),
            (self.rate_limit_burst >= 1, "rate_limit_burst must be >= 1"),
            (self.retry_after_s >= 0, "retry_after_s must be >= 0"),
            (self.retry_after_format in RETRY_AFTER_FORMATS, "unknown retry_after_format"),
            (
                all(0 <= s < e for s, e in self.outage_windows),
                "outage windows need 0 <= start < end",
            ),
            (self.outage_mode in OUTAGE_MODES, "unknown outage_mode"),
            (self.batch_max_items >= 1, "batch_max_items must be >= 1"),
        ]
        for ok, why in checks:
            if not ok:
                raise SettingsError(why)

    def with_changes(self, changes: Mapping[str, object]) -> SimulatorSettings:
        """Return a copy with JSON-decoded ``changes`` applied, checked field by field.

        An outage window may also be given in its CLI form, the string ``"START_S:END_S"``.

        Raises:
            SettingsError: A field is unknown, of the wrong type, or out of range.
        """
        unknown = sorted(set(changes) - set(_FIELD_PARSERS))
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(unknown)}")
        parsed = {name: _FIELD_PARSERS[name](name, value) for name, value in changes.items()}
        return dataclasses.replace(self, **parsed)

    def to_json(self) -> dict[str, object]:
        """Return the settings as a JSON-ready object (the shape ``with_changes`` accepts)."""
        fields = dataclasses.asdict(self)
        fields["outage_windows"] = [list(window) for window in self.outage_windows]
        return fields


def retry_after_header(settings: SimulatorSettings, now_s: float) -> str:
    """Return the ``Retry-After`` value of a 429 answered at wall-clock ``now_s``."""
    if settings.retry_after_format == "http-date":
        at = datetime.fromtimestamp(math.ceil(now_s) + settings.retry_after_s, tz=UTC)
        return format_datetime(at, usegmt=True)
    return str(settings.retry_after_s)


# --- fault plan --------------------------------------------------------------------------


class Fault(enum.StrEnum):
    """An injected failure chosen for one request."""

    OUTAGE = "outage"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    ERROR = "error"


class TokenBucket:
    """A token bucket refilled at ``rate_per_s`` up to ``capacity``; starts full."""

    def __init__(self, rate_per_s: float, capacity: int, now_s: float) -> None:
        """Create a full bucket whose refill clock starts at ``now_s``."""
        self._rate_per_s = rate_per_s
        self._capacity = float(capacity)
        self._tokens = float(capacity)
        self._updated_s = now_s

    def take(self, now_s: float) -> bool:
        """Take one token if there is one; return whether it was taken."""
        elapsed_s = max(0.0, now_s - self._updated_s)
        self._tokens = min(self._capacity, self._tokens + elapsed_s * self._rate_per_s)
        self._updated_s = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class FaultPlanner:
    """Holds the live settings and decides each request's fault and latency.

    Token buckets are kept per endpoint path; callers only plan for the fixed API paths,
    so the bucket map stays bounded.
    """

    def __init__(
        self, settings: SimulatorSettings, *, clock: Callable[[], float], rng: random.Random
    ) -> None:
        """Start the outage-window clock now, with ``rng`` as the only source of chance."""
        self._settings = settings
        self._clock = clock
        self._rng = rng
        self._started_at_s = clock()
        self._outage_until_s: float | None = None
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def settings(self) -> SimulatorSettings:
        """The settings in force."""
        return self._settings

    def update(self, changes: Mapping[str, object]) -> SimulatorSettings:
        """Apply a ``/_control`` change set atomically and return the new settings.

        Besides settings fields, ``outage_for_s`` starts a manual outage lasting that many
        seconds from now (0 ends one). A new ``seed`` reseeds the generator; new rate-limit
        values refill the buckets.

        Raises:
            SettingsError: Nothing was changed because some value was bad.
        """
        remaining = dict(changes)
        outage_for = remaining.pop("outage_for_s", None)
        outage_s = None if outage_for is None else _as_float("outage_for_s", outage_for)
        if outage_s is not None and outage_s < 0:
            raise SettingsError("outage_for_s must be >= 0")
        new = self._settings.with_changes(remaining)
        if outage_s is not None:
            self._outage_until_s = self._clock() + outage_s
        if "seed" in remaining and new.seed is not None:
            self._rng.seed(new.seed)
        if {"rate_limit_rps", "rate_limit_burst"} & remaining.keys():
            self._buckets.clear()
        self._settings = new
        return new

    def outage_active(self) -> bool:
        """Return whether a manual outage or a configured outage window covers now."""
        now_s = self._clock()
        if self._outage_until_s is not None and now_s < self._outage_until_s:
            return True
        elapsed_s = now_s - self._started_at_s
        return any(start <= elapsed_s < end for start, end in self._settings.outage_windows)

    def plan(self, path: str) -> Fault | None:
        """Return the fault for one request to ``path``, or None to answer it normally."""
        settings = self._settings
        if self.outage_active():
            return Fault.OUTAGE
        if settings.rate_limit_rps > 0 and not self._bucket(path).take(self._clock()):
            return Fault.RATE_LIMITED
        if settings.timeout_rate > 0 and self._rng.random() < settings.timeout_rate:
            return Fault.TIMEOUT
        if settings.error_rate > 0 and self._rng.random() < settings.error_rate:
            return Fault.ERROR
        return None

    def latency_s(self) -> float:
        """Draw the delay before answering a request that got no fault."""
        mean_ms = self._settings.latency_ms
        if mean_ms <= 0:
            return 0.0
        match self._settings.latency_distribution:
            case "uniform":
                delay_ms = self._rng.uniform(0.0, 2.0 * mean_ms)
            case "exponential":
                delay_ms = self._rng.expovariate(1.0 / mean_ms)
            case _:
                delay_ms = mean_ms
        return delay_ms / 1000.0

    def _bucket(self, path: str) -> TokenBucket:
        bucket = self._buckets.get(path)
        if bucket is None:
            settings = self._settings
            bucket = TokenBucket(settings.rate_limit_rps, settings.rate_limit_burst, self._clock())
            self._buckets[path] = bucket
        return bucket
