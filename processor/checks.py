"""Declarative upstream checks: build a request from record fields, judge the answer.

A :class:`Check` turns one validated record into one upstream call and a
``CheckResult``: ``passed``, ``failed`` (the upstream's clear "no"), ``skipped`` (its
``when_present`` field is empty) or, for an optional check that could not run,
``unverified``. A required check that could not run raises the ``UpstreamError``; the
pipeline turns that into a dead letter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from processor.config import CheckConfig
from processor.errors import UpstreamBadResponse, UpstreamError
from processor.upstream import Caller, UpstreamRequest
from processor.waits import ActivityBoard
from schemas.outcomes import CheckResult, CheckStatus

MAX_EVIDENCE_CHARS = 256


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_EVIDENCE_CHARS:
        return value[:MAX_EVIDENCE_CHARS] + "..."
    return value


class Check:
    """One configured check bound to its upstream caller."""

    def __init__(
        self,
        config: CheckConfig,
        caller: Caller,
        activity: ActivityBoard | None = None,
        observe_s: Callable[[float], None] = lambda _s: None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._caller = caller
        self._observe_s = observe_s
        self._activity = activity or ActivityBoard()
        self._doing = f"check {config.name} (upstream {config.upstream})"

    def applies_to(self, data: dict[str, Any]) -> bool:
        field = self.config.when_present
        return field is None or data.get(field) not in (None, "")

    async def run(self, record_id: str, data: dict[str, Any]) -> CheckResult:
        """Run the check on a record's normalised data.

        Raises:
            UpstreamError: A required check could not get an answer.
        """
        cfg = self.config
        if not self.applies_to(data):
            return self._result(CheckStatus.SKIPPED, attempts=0, latency_ms=0.0)
        body = {key: data.get(field) for key, field in cfg.body.items()}
        request = UpstreamRequest(
            method=cfg.method,
            path=cfg.path,
            json_body=body,
            idempotency_key=f"{record_id}:{cfg.name}",
        )
        try:
            started = time.perf_counter()
            try:
                with self._activity.doing(self._doing):
                    response = await self._caller.call(request)
            finally:
                self._observe_s(time.perf_counter() - started)
            if not isinstance(response.body, dict):
                raise UpstreamBadResponse(
                    f"{cfg.upstream}: answer is not a JSON object", upstream=cfg.upstream
                )
        except UpstreamError as exc:
            if cfg.required:
                raise
            return self._result(
                CheckStatus.UNVERIFIED,
                attempts=exc.attempts,
                latency_ms=0.0,
                http_status=exc.status,
                evidence={"error": exc.reason.value, "message": _bounded(str(exc))},
            )
        verdict = response.body.get(cfg.pass_field)
        evidence = {
            k: _bounded(v) for k, v in response.body.items() if isinstance(v, str | int | bool)
        }
        status = CheckStatus.PASSED if verdict == cfg.pass_equals else CheckStatus.FAILED
        return self._result(
            status,
            attempts=response.attempts,
            latency_ms=response.latency_ms,
            http_status=response.status,
            evidence=evidence,
        )

    def rejection_message(self, result: CheckResult) -> str:
        """Why the upstream said no, in its own words where it gave any."""
        evidence = result.evidence or {}
        field = self.config.reason_field
        if field and evidence.get(field):
            return f"{self.name}: {evidence[field]}"
        return f"{self.name}: {self.config.pass_field} is {evidence.get(self.config.pass_field)!r}"

    def _result(
        self,
        status: CheckStatus,
        *,
        attempts: int,
        latency_ms: float,
        http_status: int | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> CheckResult:
        return CheckResult(
            name=self.name,
            upstream=self.config.upstream,
            status=status,
            required=self.config.required,
            attempts=attempts,
            latency_ms=round(latency_ms, 3),
            http_status=http_status,
            evidence=evidence,
        )
