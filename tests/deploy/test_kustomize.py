"""k8s/: every kustomization renders with `kubectl kustomize` and every object validates offline.

Built-in objects are validated by kubernetes-validate against the bundled OpenAPI schemas of
Kubernetes K8S_VERSION in strict mode (unknown fields are errors). Custom resources (Strimzi,
Prometheus Operator) have no schema package in the dev extra: their schema test skips with
the reason, and the tests below check what they must agree on (names, selectors, partitions,
PromQL through promtool).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from packaging.version import Version

from services.settings import Settings
from tests.deploy.manifests import (
    K8S,
    K8S_VERSION,
    KUSTOMIZATIONS,
    ROOT,
    containers,
    find,
    kubectl_version,
    named,
    pod_labels,
    pod_spec,
    readme_commands,
    render,
    unknown_setting,
)
from tests.observability.promql import REQUIRED_ALERTS

pytestmark = pytest.mark.integration

Objects = tuple[dict[str, Any], ...]

CUSTOM_GROUPS = {
    "kafka.strimzi.io": (
        "no package that `make setup` installs ships the Strimzi CRD schemas "
        "(kafka.strimzi.io/v1beta2 Kafka, KafkaNodePool, KafkaTopic; no PyPI or npm package "
        "found that ships them); "
        "their wiring is checked by test_kafka_* below"
    ),
    "monitoring.coreos.com": (
        "the Prometheus Operator CRD schemas (ServiceMonitor, PrometheusRule) are not in the "
        "dev extra (npm @kubernetes-models/prometheus-operator and PyPI "
        "cloudcoil-models-prometheus-operator carry them only as generated code); selectors "
        "are checked by test_service_monitors_* and PromQL by test_prometheus_rules_pass_promtool"
    ),
}
FLYWHEEL_IMAGE = "registry.example.com/flywheel"
KAFKA_CLIENTS = frozenset({"encoder-server", "feedback-ingest"})
"""The containers that talk to Kafka (the retrainer and canary controller read snapshots)."""
# The Kafka TLS/SCRAM settings every Kafka client of the prod overlay gets.
KAFKA_SECURITY_SETTINGS = frozenset(
    {
        "FLYWHEEL_KAFKA__SECURITY_PROTOCOL",
        "FLYWHEEL_KAFKA__SASL_MECHANISM",
        "FLYWHEEL_KAFKA__SASL_USERNAME",
        "FLYWHEEL_KAFKA__SASL_PASSWORD",
        "FLYWHEEL_KAFKA__SSL_CAFILE",
    }
)


def group_of(obj: dict[str, Any]) -> str:
    api = str(obj["apiVersion"])
    return api.split("/", maxsplit=1)[0] if "/" in api else ""


def validator() -> ModuleType:
    """kubernetes_validate.utils (imported by name: the package ships no type information)."""
    return importlib.import_module("kubernetes_validate.utils")


def sync_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_from_deploy", K8S / "sync_from_deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workloads(objects: Objects) -> list[dict[str, Any]]:
    return [o for o in objects if pod_spec(o) is not None]


def config(objects: Objects) -> dict[str, str]:
    data: dict[str, str] = named(objects, "ConfigMap", "flywheel-config")["data"]
    return data


def flywheel_containers(objects: Objects) -> list[dict[str, Any]]:
    """Containers that run the `flywheel` entrypoint (the project's images, no command)."""
    return [
        c
        for o in workloads(objects)
        for c in containers(pod_spec(o) or {})
        if c["image"].startswith(FLYWHEEL_IMAGE) and "command" not in c
    ]


# --- rendering and schemas ------------------------------------------------------------------


def test_tools() -> None:
    """Which kubectl renders and which schemas validate (shown with -rA)."""
    version = validator().latest_version()
    assert Version(version) >= Version(K8S_VERSION), "kubernetes-validate too old"
    print(f"{kubectl_version()}; kubernetes-validate schemas up to {version}, using {K8S_VERSION}")


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_builtin_objects_validate(kustomization: str) -> None:
    utils = validator()
    objects = render(kustomization)
    assert objects
    checked, errors = 0, []
    for obj in objects:
        if group_of(obj) in CUSTOM_GROUPS:
            continue
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            utils.validate(obj, K8S_VERSION, strict=True)
        except utils.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            errors.append(f"{name}: {path}: {exc.message}")
        except utils.SchemaNotFoundError as exc:
            errors.append(f"{name}: {exc.message}")
        checked += 1
    assert not errors, "\n".join(errors)
    assert checked >= 25


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
@pytest.mark.parametrize("group", sorted(CUSTOM_GROUPS))
def test_custom_resources_validate(kustomization: str, group: str) -> None:
    kinds = sorted({o["kind"] for o in render(kustomization) if group_of(o) == group})
    assert kinds, f"no {group} objects in {kustomization}"
    pytest.skip(f"{', '.join(kinds)}: {CUSTOM_GROUPS[group]}")


def test_strict_validation_catches_mistakes() -> None:
    """Guards the guard: a misspelt probe and a wrong type are refused."""
    utils = validator()
    deployment = find(render("base"), "Deployment", "encoder-server")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(utils.ValidationError):
        utils.validate(broken, K8S_VERSION, strict=True)
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(utils.ValidationError):
        utils.validate(broken, K8S_VERSION, strict=True)


# --- what every workload must have ----------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_resources_and_security_on_every_container(kustomization: str) -> None:
    problems = []
    for obj in workloads(render(kustomization)):
        spec = pod_spec(obj) or {}
        pod_security = spec.get("securityContext", {})
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token")
        if pod_security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: no RuntimeDefault seccomp profile")
        for container in containers(spec):
            at = f"{where}/{container['name']}"
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(bound, {}):
                        problems.append(f"{at}: no {bound}.{resource}")
            security = container.get("securityContext", {})
            if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
                problems.append(f"{at}: may run as root")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allows privilege escalation")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: writable root filesystem")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{at}: keeps Linux capabilities")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_flywheel_commands_are_readme_commands(kustomization: str) -> None:
    found = flywheel_containers(render(kustomization))
    assert {c["args"][0] for c in found} == {"serve", "ingest", "retrain", "index", "canary"}
    for container in found:
        assert container["args"][0] in readme_commands(), container["name"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_selectors_find_their_pods(kustomization: str) -> None:
    objects = render(kustomization)
    templates = [
        o["spec"]["template"]["metadata"]["labels"]
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet"}
    ]
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in {"Deployment", "StatefulSet"}:
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        if kind == "Service":
            selector = obj["spec"]["selector"].items()
            assert any(selector <= t.items() for t in templates), f"Service/{name} selects nothing"
        if kind == "PodDisruptionBudget":
            selector = obj["spec"]["selector"]["matchLabels"].items()
            assert any(selector <= t.items() for t in templates), f"PDB/{name} selects nothing"
        if kind == "HorizontalPodAutoscaler":
            target = obj["spec"]["scaleTargetRef"]
            find(objects, target["kind"], target["name"])


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_service_monitors_find_a_port(kustomization: str) -> None:
    objects = render(kustomization)
    services = [o for o in objects if o["kind"] == "Service"]
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {
        "encoder-server",
        "feedback-ingest",
        "canary-controller",
        "pushgateway",
        "qdrant",
    }
    jobs = set()
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"].items()
        matched = [s for s in services if selector <= s["metadata"].get("labels", {}).items()]
        assert matched, f"ServiceMonitor/{monitor['metadata']['name']} selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            ports = {p["name"] for s in matched for p in s["spec"]["ports"]}
            assert endpoint["port"] in ports
        if "jobLabel" in monitor["spec"]:
            jobs |= {s["metadata"]["labels"][monitor["spec"]["jobLabel"]] for s in matched}
    # The job names the shared rules and dashboards use (deploy/prometheus/prometheus.yml).
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert {job["job_name"] for job in prometheus["scrape_configs"]} <= jobs


# --- components ------------------------------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_encoder_server(kustomization: str) -> None:
    objects = render(kustomization)
    deployment = find(objects, "Deployment", "encoder-server")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["serve", "--host", "0.0.0.0"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "startupProbe" in container
    token = next(e for e in container["env"] if e["name"] == "FLYWHEEL_SERVER__ADMIN_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "flywheel-admin",
        "key": "admin-token",
        "optional": True,
    }
    find(objects, "HorizontalPodAutoscaler", "encoder-server")
    find(objects, "PodDisruptionBudget", "encoder-server")


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_feedback_ingest_is_a_single_writer(kustomization: str) -> None:
    objects = render(kustomization)
    deployment = find(objects, "Deployment", "feedback-ingest")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert find(objects, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not any(o["kind"] == "HorizontalPodAutoscaler" and "ingest" in str(o) for o in objects)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/lib/flywheel/exports"]["subPath"] == "exports"
    assert config(objects)["FLYWHEEL_INGEST__METRICS_HOST"] == "0.0.0.0"


def test_registry_lives_on_a_shared_volume() -> None:
    objects = render("base")
    assert find(objects, "PersistentVolumeClaim", "flywheel-home")["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]
    for name in ("encoder-server", "feedback-ingest"):
        spec = find(objects, "Deployment", name)["spec"]["template"]["spec"]
        claims = {v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]}
        assert "flywheel-home" in claims, name
    for name in ("retrainer", "flywheel-index"):
        spec = pod_spec(find(objects, "CronJob", name)) or {}
        claims = {v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]}
        assert "flywheel-home" in claims, name


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_retrainer_cronjob(kustomization: str) -> None:
    cronjob = find(render(kustomization), "CronJob", "retrainer")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    spec = pod_spec(cronjob) or {}
    (container,) = spec["containers"]
    assert container["args"] == ["retrain"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    device, backend = env["FLYWHEEL_TRAIN__DEVICE"], env["FLYWHEEL_ENCODER__DOC_BACKEND"]
    if kustomization == "overlays/dev":
        assert "nvidia.com/gpu" not in json.dumps(spec)
        assert (device, backend) == ("cpu", "onnx")
    else:
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert spec["nodeSelector"]
        assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
        assert (device, backend) == ("cuda", "torch")


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_index_job_is_on_demand(kustomization: str) -> None:
    cronjob = find(render(kustomization), "CronJob", "flywheel-index")
    assert cronjob["spec"]["suspend"] is True
    (container,) = (pod_spec(cronjob) or {})["containers"]
    assert container["args"][:2] == ["index", "--catalog"]
    assert container["image"].endswith("-train"), "registering the bundled model needs PyTorch"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_qdrant_cluster(kustomization: str) -> None:
    objects = render(kustomization)
    statefulset = find(objects, "StatefulSet", "qdrant")
    assert statefulset["spec"]["replicas"] == (1 if kustomization == "overlays/dev" else 3)
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["QDRANT__CLUSTER__ENABLED"] == "true"
    p2p = env["QDRANT__CLUSTER__P2P__PORT"]
    headless = find(objects, "Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert int(p2p) in {p["port"] for p in headless["spec"]["ports"]}
    script = named(objects, "ConfigMap", "qdrant-init")["data"]["qdrant-initialize.sh"]
    assert f"qdrant-0.{headless['metadata']['name']}:{p2p}" in script
    settings = config(objects)
    url = settings["FLYWHEEL_QDRANT__URL"]
    service = find(objects, "Service", url.split("//")[1].split(":")[0])
    assert int(url.rsplit(":", 1)[1]) in {p["port"] for p in service["spec"]["ports"]}
    replication = int(settings["FLYWHEEL_QDRANT__REPLICATION_FACTOR"])
    assert 1 <= replication <= statefulset["spec"]["replicas"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kafka_strimzi_kraft(kustomization: str) -> None:
    objects = render(kustomization)
    kafka = next(o for o in objects if o["kind"] == "Kafka")
    name = kafka["metadata"]["name"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    pools = [o for o in objects if o["kind"] == "KafkaNodePool"]
    assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == name for p in pools)
    assert {r for p in pools for r in p["spec"]["roles"]} == {"controller", "broker"}
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])

    settings = config(objects)
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert settings["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"] == (
        f"{name}-kafka-bootstrap:{listener['port']}"
    )
    topics = {t["spec"]["topicName"]: t for t in objects if t["kind"] == "KafkaTopic"}
    defaults = Settings().kafka
    assert set(topics) == {defaults.topic, defaults.dlq_topic}
    events = topics[defaults.topic]["spec"]
    assert events["partitions"] == int(settings["FLYWHEEL_KAFKA__PARTITIONS"])
    if kustomization != "overlays/dev":
        assert events["partitions"] == 12
    for topic in topics.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == name
        assert topic["spec"]["replicas"] == int(settings["FLYWHEEL_KAFKA__REPLICATION_FACTOR"])
        assert topic["spec"]["replicas"] <= brokers
        assert topic["spec"]["config"]["min.insync.replicas"] <= topic["spec"]["replicas"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_flywheel_config_is_valid_settings(
    kustomization: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = config(render(kustomization))
    problems = [p for p in map(unknown_setting, set(values)) if p]
    assert not problems, problems
    expected = {"base": (3, 2), "overlays/dev": (1, 1), "overlays/prod": (6, 2)}[kustomization]
    # Each container as it starts: the shared ConfigMap plus its own env (secrets stand in).
    for container in flywheel_containers(render(kustomization)):
        with monkeypatch.context() as env:
            for key, value in values.items():
                env.setenv(key, value)
            for item in container.get("env", []):
                env.setenv(item["name"], item.get("value", "from-a-secret"))
            settings = Settings()
            assert (settings.qdrant.shard_number, settings.qdrant.replication_factor) == expected
            assert str(settings.home) == "/var/lib/flywheel"
            if container["name"] in KAFKA_CLIENTS:  # its credentials reach every client
                settings.kafka.producer_config("flywheel-kafka:9093")
                settings.kafka.consumer_config("flywheel-kafka:9093")


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_container_env_names_are_settings(kustomization: str) -> None:
    names = {
        e["name"] for c in flywheel_containers(render(kustomization)) for e in c.get("env", [])
    }
    assert names
    problems = [p for p in map(unknown_setting, names) if p]
    assert not problems, problems


def test_prod_kafka_clients_use_tls_and_scram() -> None:
    """The prod overlay's Kafka clients set the TLS and SCRAM settings (real settings:
    test_container_env_names_are_settings), and the settings accept them."""
    from services.kafka.config import KafkaSettings

    used = set(config(render("overlays/prod"))) | {
        e["name"] for c in flywheel_containers(render("overlays/prod")) for e in c.get("env", [])
    }
    assert used >= KAFKA_SECURITY_SETTINGS
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="encoder-server",
        sasl_password="secret",
        ssl_cafile="/etc/kafka-ca/ca.crt",
    )
    assert kafka.producer_config("kafka:9093")["sasl_plain_password"] == "secret"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_network_policies(kustomization: str) -> None:
    objects = render(kustomization)
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    egress = policies["default-deny-egress"]["spec"]["podSelector"]["matchExpressions"][0]
    # Every workload's pods are held by default-deny-egress (Strimzi's keep their egress).
    apps = {pod_labels(o)["app.kubernetes.io/name"] for o in workloads(objects)}
    assert apps >= {"encoder-server", "retrainer", "qdrant", "qdrant-snapshot", "pushgateway"}
    assert set(egress["values"]) == apps
    for app in apps:
        assert any(app in json.dumps(p["spec"]["podSelector"]) for p in policies.values())


def test_admin_token_secret() -> None:
    assert not any(o["kind"] == "Secret" for o in render("base")), "no secret in the base"
    assert not any(o["kind"] == "Secret" for o in render("overlays/prod"))
    secret = find(render("overlays/dev"), "Secret", "flywheel-admin")
    assert secret["data"]["admin-token"], "an empty token would open the admin endpoints"


def test_overlays() -> None:
    dev, prod = render("overlays/dev"), render("overlays/prod")
    assert find(dev, "Deployment", "encoder-server")["spec"]["replicas"] == 1
    assert find(dev, "HorizontalPodAutoscaler", "encoder-server")["spec"]["minReplicas"] == 1
    assert find(prod, "HorizontalPodAutoscaler", "encoder-server")["spec"]["minReplicas"] == 3
    assert find(prod, "PodDisruptionBudget", "encoder-server")["spec"]["minAvailable"] == 2
    assert "minAvailable" not in find(dev, "PodDisruptionBudget", "encoder-server")["spec"]
    assert next(o for o in dev if o["kind"] == "KafkaNodePool")["spec"]["replicas"] == 1

    def memory(objects: Objects, kind: str, name: str) -> str:
        spec = pod_spec(find(objects, kind, name)) or {}
        value: str = spec["containers"][0]["resources"]["requests"]["memory"]
        return value

    base = render("base")
    for kind, name in (("StatefulSet", "qdrant"), ("Deployment", "feedback-ingest")):
        assert memory(dev, kind, name) != memory(base, kind, name) != memory(prod, kind, name)


# --- shared with deploy/: dashboards and alerts ---------------------------------------------


def test_dashboards_and_rules_are_copies_of_deploy() -> None:
    problems = sync_module().differences()
    assert not problems, "\n".join([*problems, "run: python k8s/sync_from_deploy.py"])


def test_dashboard_configmaps_hold_every_dashboard() -> None:
    objects = render("base")
    dashboards = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]
    ]
    shipped = {key: json.loads(value) for o in dashboards for key, value in o["data"].items()}
    source = ROOT / "deploy" / "grafana" / "dashboards"
    expected = {p.name: json.loads(p.read_text()) for p in source.glob("*.json")}
    assert expected, "deploy/grafana/dashboards has no dashboard"
    assert shipped == expected


def test_prometheus_rules_carry_the_alerts() -> None:
    rules = [o for o in render("base") if o["kind"] == "PrometheusRule"]
    alerts = {r.get("alert") for o in rules for g in o["spec"]["groups"] for r in g["rules"]}
    assert alerts >= REQUIRED_ALERTS


def test_prometheus_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make system-deps` (Debian's prometheus)")
    for rule in (o for o in render("base") if o["kind"] == "PrometheusRule"):
        path = tmp_path / f"{rule['metadata']['name']}.yml"
        path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        result = subprocess.run(
            [promtool, "check", "rules", str(path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
