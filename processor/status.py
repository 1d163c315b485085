"""What one instance knows about itself: outcome counts, readiness, the ``/status`` document.

- :class:`OutcomeCounts` is the engine's ``on_outcome`` callback: it counts outcomes by
  topic and reason (for ``/status`` and the summary line) and feeds the outcome metrics.
- :class:`Status` implements the endpoint's ``StatusSource`` (``liveness()``,
  ``readiness()``, ``status()``) and runs the poller that, every
  ``endpoint.broker_check_interval_s``, probes the broker (its transitions logged by
  :class:`~processor.reachability.Reachability`), computes each partition's lag from the
  broker's end offsets and what the engine last committed, and sets the ``consumer_lag``,
  ``stalled`` and ``ready`` gauges.

Probe semantics (README, "Operating it"): *liveness* is the event loop answering and the
intake loop running and not stuck outside its poll for :data:`LIVENESS_STUCK_S` (waiting on
the broker counts as alive); *readiness* is started (a first broker check done), in the
group (an assignment received, possibly empty: a standby member is ready) and the broker
reachable. A stall or an open breaker is reported in ``/status``, the metrics and the
alerts, never by failing a probe: restarting or unreadying the pod would only add a
rebalance to an upstream outage.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import Counter as CounterMetric
from prometheus_client import Histogram

from processor import __version__
from processor.config import EndpointConfig
from processor.engine import TP, Engine
from processor.guard import DeadLetterGuard
from processor.metrics import Metrics
from processor.outcomes import Outcome, outcome_label
from processor.reachability import Reachability
from processor.watchdog import Watchdog

RATE_WINDOW_S = 60.0
LIVENESS_STUCK_S = 120.0  # the intake loop busy (not polling) this long: not live
_BREAKER_NAMES = ("closed", "half_open", "open")


class BrokerProbe(Protocol):
    """What the poller asks the broker (``processor.kafka.KafkaConsumer`` answers)."""

    async def reachable(self, timeout_s: float) -> bool: ...
    async def lag(self, committed: Mapping[TP, int | None], timeout_s: float) -> dict[TP, int]: ...


class IntakeState(Protocol):
    """What the probes read from the intake loop (``processor.intake.Intake`` has it)."""

    running: bool
    joined: bool
    busy_since: float | None


class OutcomeCounts:
    """Outcomes acknowledged so far, by ``<topic>:<reason>``; also counted in the metrics."""

    def __init__(self, metrics: Metrics, guard: DeadLetterGuard | None = None) -> None:
        self._metrics = metrics
        self._guard = guard
        self.totals: Counter[str] = Counter()
        self._children: dict[str, tuple[CounterMetric, Histogram]] = {}

    def record(self, outcome: Outcome, took_s: float) -> None:
        topic, code = outcome_label(outcome)
        name = f"{topic}:{code}"
        if self._guard is not None:
            self._guard.observe(topic == "dead-letter", code)
        self.totals[name] += 1
        children = self._children.get(name)
        if children is None:  # labels() costs a lock and a dict lookup: once per series
            children = self._children[name] = (
                self._metrics.outcomes.labels(topic, code),
                self._metrics.pipeline_seconds.labels(topic),
            )
        children[0].inc()
        children[1].observe(took_s)

    def total(self) -> int:
        return sum(self.totals.values())


class Status:
    """Readiness and status of one instance, kept fresh by :meth:`run`."""

    def __init__(
        self,
        *,
        instance_id: str,
        upstreams: Iterable[str],
        config: EndpointConfig,
        metrics: Metrics,
        counts: OutcomeCounts,
        engine: Engine,
        watchdog: Watchdog,
        probe: BrokerProbe,
        guard: DeadLetterGuard | None = None,
        broker_address: str = "",
        intake: IntakeState,
    ) -> None:
        self._instance_id = instance_id
        self._upstreams = list(upstreams)
        self._config = config
        self._metrics = metrics
        self._counts = counts
        self._engine = engine
        self._watchdog = watchdog
        self._probe = probe
        self._guard = guard
        self._intake = intake
        self._checked = False
        self._broker_reachable = False
        self._reachability = Reachability(broker_address, metrics.broker_reachable)
        self._lag: dict[TP, int] = {}
        self._samples: deque[tuple[float, int]] = deque()

    @property
    def ready(self) -> bool:
        """Started, in the group, broker reachable (the /readyz answer)."""
        return self.readiness()["ready"]

    def liveness(self) -> dict[str, bool]:
        """The intake loop runs (or stops on request) and is not stuck outside its poll."""
        intake = self._intake
        busy = intake.busy_since
        not_stuck = busy is None or time.monotonic() - busy < LIVENESS_STUCK_S
        return {"live": intake.running and not_stuck, "intake_running": intake.running,
                "intake_not_stuck": not_stuck}  # fmt: skip

    def readiness(self) -> dict[str, bool]:
        in_group = self._intake.joined
        ready = self._checked and in_group and self._broker_reachable
        return {"ready": ready, "started": self._checked, "in_group": in_group,
                "broker_reachable": self._broker_reachable}  # fmt: skip

    def status(self) -> dict[str, Any]:
        engine = self._engine
        now, total = time.monotonic(), self._counts.total()
        rate = 0.0
        if self._samples:
            then, before = self._samples[0]
            rate = (total - before) / max(now - then, 1e-9)
        registry = self._metrics.registry
        breakers = {
            name: int(registry.get_sample_value("processor_breaker_state", {"upstream": name})
                      or 0)
            for name in self._upstreams
        }  # fmt: skip
        return {
            "instance": self._instance_id,
            "version": __version__,
            **self.readiness(),
            "live": self.liveness()["live"],
            "stalled": self._watchdog.stalled,
            "assigned": [f"{t}-{p}" for t, p in engine.assigned],
            "in_flight": engine.in_flight,
            "lag": {f"{t}-{p}": lag for (t, p), lag in self._lag.items()},
            "breakers": {n: _BREAKER_NAMES[v] for n, v in breakers.items()},
            "outcomes_total": dict(self._counts.totals),
            "outcomes_per_s_last_minute": round(rate, 1),
            "dead_letter_guard": self._guard_state(),
        }

    def _guard_state(self) -> dict[str, Any]:
        return self._guard.state() if self._guard is not None else {"enabled": False}

    def resume_guard(self, by: str) -> dict[str, Any]:
        """Let a tripped dead-letter guard take records again (``POST /guard/resume``)."""
        resumed = self._guard.resume(by) if self._guard is not None else False
        return {"resumed": resumed, "dead_letter_guard": self._guard_state()}

    async def refresh(self) -> None:
        """Probe the broker, recompute the lag, set the gauges, sample the outcome rate."""
        timeout_s = self._config.broker_check_timeout_s
        self._broker_reachable = await self._probe.reachable(timeout_s)
        self._reachability.observe(self._broker_reachable)
        self._lag = await self._probe.lag(self._engine.committed(), timeout_s)
        self._checked = True
        for (topic, partition), lag in self._lag.items():
            self._metrics.consumer_lag.labels(topic, str(partition)).set(lag)
        self._metrics.stalled.set(int(self._watchdog.stalled))
        if self._guard is not None:
            self._guard.tick()
        self._metrics.ready.set(int(self.ready))
        now = time.monotonic()
        self._samples.append((now, self._counts.total()))
        while self._samples and self._samples[0][0] < now - RATE_WINDOW_S:
            self._samples.popleft()

    async def run(self) -> None:
        """:meth:`refresh` every ``broker_check_interval_s``, until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(self._config.broker_check_interval_s)
