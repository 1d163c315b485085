"""The Kubernetes manifests, offline: every overlay renders with `kubectl kustomize`, the
rendered objects pass `kubernetes-validate --strict` (KEDA's kinds have no schema there and
are checked by field here), and the invariants that tie them to the processor's config hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from processor.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBE / "overlays").iterdir() if p.is_dir())
TIMEOUT_S = 60
GRACE_MARGIN_S = 10
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


@cache
def _render(overlay: str) -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is required (make test renders the overlays)"
    done = subprocess.run(
        [kubectl, "kustomize", str(KUBE / "overlays" / overlay)],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _objects(overlay: str) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(_render(overlay)) if doc}


@cache
def _config() -> Settings:
    return load_settings(KUBE / "base" / "processor.yaml")


def _container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_there_are_dev_and_prod_overlays() -> None:
    """Both environments exist (the parametrised tests below cover each)."""
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_and_passes_strict_schema_validation(
    overlay: str, tmp_path: Path
) -> None:
    """`kubectl kustomize` renders it and every built-in kind passes the strict schema."""
    docs = [d for d in yaml.safe_load_all(_render(overlay)) if d]
    builtin = [d for d in docs if d["kind"] not in KEDA_KINDS]
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    done = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", str(path)],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert {"Deployment", "ConfigMap", "Service", "PodDisruptionBudget"} <= {
        d["kind"] for d in builtin
    }


def test_the_configmap_is_a_valid_config_in_step_with_the_example() -> None:
    """The mounted config loads, serves on all interfaces, and has the example's record
    types, checks and timeouts (only addresses differ)."""
    example = load_settings(ROOT / "deploy" / "config" / "processor.example.yaml")
    config = _config()
    assert config.endpoint.host == "0.0.0.0"  # the kubelet probes the pod IP
    assert config.types.names() == example.types.names()
    assert config.engine == example.engine
    assert config.kafka.topics == example.kafka.topics
    rendered = _objects("prod")["ConfigMap"]["data"]["processor.yaml"]
    assert rendered == (KUBE / "base" / "processor.yaml").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_covers_drain_plus_flush_with_a_margin(overlay: str) -> None:
    """SIGTERM has time to drain in-flight work and flush the producer before SIGKILL."""
    config = _config()
    spec = _objects(overlay)["Deployment"]["spec"]["template"]["spec"]
    needed = config.engine.drain_timeout_s + config.kafka.flush_timeout_s + GRACE_MARGIN_S
    assert spec["terminationGracePeriodSeconds"] >= needed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ports_and_scrape_annotations_match_the_endpoint(overlay: str) -> None:
    """Liveness on /livez, readiness on /readyz, both on the config's endpoint port, which
    the scrape annotations and the Service name too."""
    objects = _objects(overlay)
    container = _container(objects)
    port = _config().endpoint.port
    (named,) = container["ports"]
    assert named == {"name": "metrics", "containerPort": port, "protocol": "TCP"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    for annotated in (objects["Deployment"]["spec"]["template"], objects["Service"]):
        notes = annotated["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true"
        assert notes["prometheus.io/port"] == str(port)
        assert notes["prometheus.io/path"] == "/metrics"
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] == "metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_security_and_mounts(overlay: str) -> None:
    """Requests and a memory limit are set, the pod runs as the image's non-root user, and
    the config and credential Secrets are mounted where the image documents them."""
    objects = _objects(overlay)
    container = _container(objects)
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/etc/processor"] == "config"
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets[mounts["/run/secrets/processor/kafka"]] == "record-processor-kafka"
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_prod_scales_on_lag_capped_at_the_partition_count() -> None:
    """KEDA's kafka trigger watches the config's group and input topic, max replicas equal
    the input partitions, and scale-down waits in a stabilisation window."""
    objects = _objects("prod")
    scaled = objects["ScaledObject"]
    spec = scaled["spec"]
    config = _config()
    partitions = int(scaled["metadata"]["annotations"]["record-processor/input-partitions"])
    assert spec["maxReplicaCount"] == partitions
    assert spec["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == config.kafka.group_id
    assert trigger["metadata"]["topic"] == config.kafka.topics.input
    assert int(trigger["metadata"]["lagThreshold"]) > 0
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 60
    assert (
        trigger["authenticationRef"]["name"] == objects["TriggerAuthentication"]["metadata"]["name"]
    )
    assert "ScaledObject" not in _objects("dev")
