"""docker-compose.yml, checked without a container engine: the local stack's services, the
processor from the image (nothing installed at start), start order by health, the config the
processor sees with the file's overrides, and the Prometheus and Grafana files it mounts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from processor.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]  # type: ignore[no-any-return]


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path (relative to the repository) of each bind mount."""
    out = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        out[container] = ROOT / host
    return out


def test_the_stack_has_its_services_and_builds_the_processor_image() -> None:
    """Kafka, simulator, topics, processor, Prometheus and Grafana; the processor and the
    simulator are built from the Containerfile; nobody runs pip."""
    services = _services()
    assert set(services) == {"kafka", "simulator", "topics", "processor", "prometheus", "grafana"}
    assert services["processor"]["build"]["dockerfile"] == "Containerfile"
    assert services["simulator"]["build"]["target"] == "simulator"
    text = (ROOT / "docker-compose.yml").read_text()
    assert "pip install" not in text
    assert "python:3.11-slim" not in text


def test_start_order_waits_on_health_and_the_topics() -> None:
    """Topics are created once Kafka is healthy; the processor starts after they exist; its
    stop grace period covers drain plus flush like the Kubernetes one."""
    services = _services()
    assert "healthcheck" in services["kafka"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    after = services["processor"]["depends_on"]
    assert after["topics"]["condition"] == "service_completed_successfully"
    example = load_settings(ROOT / "deploy" / "config" / "processor.example.yaml")
    grace_s = int(services["processor"]["stop_grace_period"].rstrip("s"))
    assert grace_s > example.engine.drain_timeout_s + example.kafka.flush_timeout_s


def test_the_processor_config_points_at_the_stacks_services() -> None:
    """With the service's environment applied, the mounted config reaches Kafka and the
    simulator by their service names and serves its endpoint on the published port."""
    processor = _services()["processor"]
    config_path = _mounts(processor)["/etc/processor/processor.yaml"]
    env = {k: str(v) for k, v in processor["environment"].items()}
    env["PROCESSOR_ENDPOINT__HOST"] = "0.0.0.0"  # the image's own ENV
    with mock.patch.dict(os.environ, env):
        settings = load_settings(config_path)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert {str(u.base_url).rstrip("/") for u in settings.upstreams.values()} == {
        "http://simulator:8081"
    }
    port = settings.endpoint.port
    assert f"{port}:{port}" in processor["ports"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"processor:{port}"]


def test_prometheus_and_grafana_mount_files_that_exist() -> None:
    """Every bind-mounted file exists; Grafana gets the datasource and the dashboard."""
    services = _services()
    for name in ("prometheus", "grafana", "processor"):
        for host in _mounts(services[name]).values():
            assert host.exists(), host
    grafana = _mounts(services["grafana"])
    dashboard = json.loads(grafana["/var/lib/grafana/dashboards/record-processor.json"].read_text())
    assert dashboard["panels"]
    provisioning = grafana["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "record-processor.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
