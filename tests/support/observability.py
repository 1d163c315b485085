"""The deploy/ monitoring files as tests see them: dashboard queries, alert rules, scrape config.

Grafana variables are substituted so that every dashboard query is plain PromQL
(``$__rate_interval`` becomes ``1m``, a multi-value variable its ``allValue``), and
:func:`non_filtering` rewrites an alert expression so that it returns data whether or not
the alert would fire.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "record-processor.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
JOB = "record-processor"

# Every metric the processor exports, by the names Prometheus stores (counters with
# ``_total``, histograms as ``_bucket``/``_count``/``_sum``).
COUNTERS = (
    "processor_records_consumed_total",
    "processor_outcomes_total",
    "processor_upstream_calls_total",
    "processor_upstream_retries_total",
    "processor_upstream_cache_total",
    "processor_commit_failures_total",
)
HISTOGRAMS = (
    "processor_pipeline_seconds",
    "processor_check_seconds",
    "processor_upstream_call_seconds",
    "processor_rate_limiter_wait_seconds",
    "processor_commit_seconds",
)
GAUGES = (
    "processor_breaker_state",
    "processor_in_flight_records",
    "processor_paused_partitions",
    "processor_blocked_partitions",
    "processor_assigned_partitions",
    "processor_consumer_lag",
    "processor_stalled",
    "processor_dead_letter_guard_tripped",
    "processor_ready",
    "processor_broker_reachable",
    "processor_build_info",
)
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")
_METRIC_NAME = re.compile(r"(?<![\w:])processor_[a-z_]+")
_GRAFANA_INTERVALS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}


def exported_series_names() -> set[str]:
    """The names of every series the processor exports."""
    return {*COUNTERS, *GAUGES, *(h + s for h in HISTOGRAMS for s in HISTOGRAM_SERIES)}


def metric_of(series_name: str) -> str:
    """The metric a series name belongs to (``x_seconds_bucket`` -> ``x_seconds``)."""
    for suffix in HISTOGRAM_SERIES:
        if series_name.endswith(suffix) and series_name.removesuffix(suffix) in HISTOGRAMS:
            return series_name.removesuffix(suffix)
    return series_name


def metric_names(expr: str) -> set[str]:
    """The processor series names a PromQL expression reads."""
    return set(_METRIC_NAME.findall(expr))


def load_dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return result


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows are only headings), nested rows included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def _variables(dashboard: dict[str, Any]) -> dict[str, str]:
    values = dict(_GRAFANA_INTERVALS)
    for var in dashboard.get("templating", {}).get("list", []):
        if var["type"] in ("query", "custom"):
            values[var["name"]] = var.get("allValue") or ".*"
    return values


def substitute(expr: str, variables: dict[str, str]) -> str:
    """``expr`` with ``$name`` and ``${name}`` replaced; an unknown variable is an error."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


@dataclass(frozen=True)
class PanelQuery:
    """One dashboard query, as plain PromQL."""

    panel: str
    ref_id: str
    expr: str


def dashboard_queries(dashboard: dict[str, Any] | None = None) -> list[PanelQuery]:
    """Every panel target's expression with the Grafana variables substituted."""
    dashboard = dashboard or load_dashboard()
    variables = _variables(dashboard)
    return [
        PanelQuery(panel["title"], target["refId"], substitute(target["expr"], variables))
        for panel in data_panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr", "").strip()
    ]


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules of every group in alerts.yml."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(?!\s*bool\b)")


def non_filtering(expr: str) -> str:
    """``expr`` with every comparison made a ``bool`` one (``A > 0.05`` -> ``A > bool 0.05``).

    A filtering comparison drops the series that do not match, so an alert that is not
    firing returns nothing; with ``bool`` it returns 0 or 1 for every series the left side
    has. ``and``/``or``/``unless`` still match on labels only. Label matchers (``{a!="b"}``)
    and strings are left alone.
    """
    out: list[str] = []
    depth = 0
    quote: str | None = None
    i = 0
    while i < len(expr):
        char = expr[i]
        if quote:
            out.append(char)
            if char == "\\":
                out.append(expr[i + 1])
                i += 1
            elif char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
            out.append(char)
        elif char in "{}":
            depth += 1 if char == "{" else -1
            out.append(char)
        elif depth == 0 and (match := _COMPARISON.match(expr, i)):
            out.append(f"{match.group(1)} bool")
            i = match.end()
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


def write_prometheus_config(directory: Path, target: str, interval: str | None = None) -> Path:
    """A copy of prometheus.yml in ``directory`` that scrapes ``target`` (``host:port``).

    The rule file is referenced by absolute path; ``interval`` overrides the scrape and
    evaluation intervals (a test wants several scrapes within seconds).
    """
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / name) for name in config["rule_files"]]
    if interval is not None:
        config["global"]["scrape_interval"] = interval
        config["global"]["evaluation_interval"] = interval
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    job["static_configs"] = [{"targets": [target]}]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
