"""Tests of deploy/prometheus and deploy/grafana: promtool accepts them, the alerts fire when
they should, and the dashboard and rules read only metrics the processor exports."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.observability import (
    ALERTS,
    COUNTERS,
    GAUGES,
    HISTOGRAMS,
    JOB,
    alert_rules,
    dashboard_queries,
    data_panels,
    exported_series_names,
    load_dashboard,
    metric_names,
    metric_of,
    write_prometheus_config,
)

INSTANCE = "10.0.0.7:9400"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool; its absence is a failure (deploy/prometheus/install.sh installs it)."""
    path = shutil.which("promtool")
    assert path, "promtool is not on PATH: run `make prometheus` (deploy/prometheus/install.sh)"
    return subprocess.run(
        [path, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_alert_rules() -> None:
    """`promtool check rules` accepts deploy/prometheus/alerts.yml."""
    result = promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_scrape_config_with_a_target_filled_in(tmp_path: Path) -> None:
    """`promtool check config` accepts a copy of prometheus.yml pointed at a processor."""
    config = write_prometheus_config(tmp_path, "127.0.0.1:19400")
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_every_alert_has_a_severity_and_the_annotations_an_operator_needs() -> None:
    """Each alert has a severity of warning or critical, a `for` duration, and a summary,
    description and runbook hint."""
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "DeadLetterRateHigh", "ConsumerLagGrowing", "BreakerOpen", "ProcessorStalled",
        "NothingConsumed",
    }  # fmt: skip
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule.get("for"), rule["alert"]
        for annotation in ("summary", "description", "runbook"):
            assert rule["annotations"].get(annotation, "").strip(), (rule["alert"], annotation)


@dataclass(frozen=True)
class AlertCase:
    """Input series (one sample a minute) and when the alert must be silent or firing."""

    alert: str
    series: dict[str, str]
    silent_at: tuple[str, ...]
    firing_at: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


def _s(name: str, **labels: str) -> str:
    """A series in promtool's notation, with this job's labels."""
    pairs = {"job": JOB, "instance": INSTANCE, **labels}
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


OK, DLQ = {"topic": "valid", "reason": "ok"}, {"topic": "dead-letter", "reason": "decode.failed"}
ALERT_CASES = {
    "down for a minute": AlertCase(
        "ProcessorDown", {_s("up"): "1 1 0x10"}, silent_at=("1m", "2m"), firing_at=("4m",),
        labels={"instance": INSTANCE},
    ),
    "9% dead letters": AlertCase(
        "DeadLetterRateHigh",
        {_s("processor_outcomes_total", **OK): "0+100x30",
         _s("processor_outcomes_total", **DLQ): "0+10x30"},
        silent_at=("3m",), firing_at=("10m", "20m"),
    ),
    "2% dead letters": AlertCase(
        "DeadLetterRateHigh",
        {_s("processor_outcomes_total", **OK): "0+100x30",
         _s("processor_outcomes_total", **DLQ): "0+2x30"},
        silent_at=("10m", "20m"),
    ),
    "lag growing": AlertCase(
        "ConsumerLagGrowing",
        {_s("processor_consumer_lag", topic="in", partition="0"): "2000+50x40",
         _s("processor_consumer_lag", topic="in", partition="1", instance="b:9400"): "900+20x40"},
        silent_at=("5m",), firing_at=("25m",), labels={"topic": "in"},
    ),
    "lag shrinking": AlertCase(
        "ConsumerLagGrowing",
        {_s("processor_consumer_lag", topic="in", partition="0"): "9000-50x40"},
        silent_at=("25m", "35m"),
    ),
    "lag growing but small": AlertCase(
        "ConsumerLagGrowing", {_s("processor_consumer_lag", topic="in", partition="0"): "0+5x40"},
        silent_at=("25m", "35m"),
    ),
    "breaker open, probing": AlertCase(
        "BreakerOpen",
        {_s("processor_breaker_state", upstream="vat"): "0 2 1 2 2 1 2 2 2 2",
         _s("processor_breaker_state", upstream="email"): "0x10"},
        silent_at=("1m",), firing_at=("3m", "6m"), labels={"instance": INSTANCE, "upstream": "vat"},
    ),
    "stalled": AlertCase(
        "ProcessorStalled", {_s("processor_stalled"): "0 1x10"},
        silent_at=("1m",), firing_at=("3m",), labels={"instance": INSTANCE},
    ),
    "nothing consumed, lag waiting": AlertCase(
        "NothingConsumed",
        {_s("processor_records_consumed_total"): "0+100x5 500x40",
         _s("processor_consumer_lag", topic="in", partition="0"): "0x5 300x40"},
        silent_at=("10m", "20m"), firing_at=("30m",), labels={"instance": INSTANCE},
    ),
    "dead-letter guard tripped": AlertCase(
        "DeadLetterGuardTripped", {_s("processor_dead_letter_guard_tripped"): "0 1x10"},
        silent_at=("0m",), firing_at=("2m",), labels={"instance": INSTANCE},
    ),
    "nothing consumed, nothing waiting": AlertCase(
        "NothingConsumed",
        {_s("processor_records_consumed_total"): "0+100x5 500x40",
         _s("processor_consumer_lag", topic="in", partition="0"): "0x45"},
        silent_at=("30m",),
    ),
}  # fmt: skip


def _rules_without_annotations(path: Path) -> Path:
    """alerts.yml without annotations: promtool compares them verbatim, and the cases here
    are about when an alert fires, not its wording."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path.write_text(yaml.safe_dump(rules))
    return path


@pytest.mark.parametrize("case", ALERT_CASES.values(), ids=ALERT_CASES.keys())
def test_alert_fires_exactly_when_its_condition_has_held_long_enough(
    case: AlertCase, tmp_path: Path
) -> None:
    """`promtool test rules` on synthetic series: the alert is silent before its condition
    has held for its `for` duration (or when the condition is not met) and firing after."""
    (severity,) = {r["labels"]["severity"] for r in alert_rules() if r["alert"] == case.alert}
    expected = {"job": JOB, "severity": severity, **case.labels}
    checks: list[dict[str, Any]] = [
        {"eval_time": t, "alertname": case.alert, "exp_alerts": []} for t in case.silent_at
    ] + [
        {"eval_time": t, "alertname": case.alert, "exp_alerts": [{"exp_labels": expected}]}
        for t in case.firing_at
    ]
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump({
        "rule_files": [str(_rules_without_annotations(tmp_path / "alerts.yml"))],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
            "alert_rule_test": checks,
        }],
    }))  # fmt: skip
    result = promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_panel_has_a_query() -> None:
    """Every data panel has a unique id, a position and at least one target with an expr."""
    panels = data_panels(load_dashboard())
    assert len(panels) >= 20
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
        assert any(exprs), f"panel {panel['title']!r} has no query"


def test_the_dashboard_reads_the_data_source_from_a_variable() -> None:
    """Every panel and target uses the `datasource` variable, so the dashboard imports or
    provisions against any Prometheus without editing."""
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 39
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    for panel in data_panels(dashboard):
        for holder in (panel, *panel["targets"]):
            assert holder["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Every panel query, Grafana variables substituted, passes promtool's PromQL parser
    (checked as recording rules)."""
    queries = dashboard_queries()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": q.expr} for i, q in enumerate(queries)
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout


def test_dashboard_and_alerts_read_only_metrics_the_processor_exports() -> None:
    """Every `processor_*` name in a panel query or an alert expression is one the processor
    exports."""
    exprs = {f"panel {q.panel!r} {q.ref_id}": q.expr for q in dashboard_queries()}
    exprs.update({f"alert {r['alert']}": r["expr"] for r in alert_rules()})
    unknown = {
        (where, name)
        for where, expr in exprs.items()
        for name in metric_names(expr)
        if name not in exported_series_names()
    }
    assert unknown == set()


def test_every_exported_metric_is_on_the_dashboard() -> None:
    """No exported metric is left off the dashboard."""
    shown = {metric_of(name) for q in dashboard_queries() for name in metric_names(q.expr)}
    assert (set(COUNTERS) | set(GAUGES) | set(HISTOGRAMS)) - shown == set()
