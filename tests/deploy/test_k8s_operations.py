"""k8s/: operating it at scale. The retrainer's metrics through the Pushgateway, one Qdrant
scrape per peer with the API key, Qdrant snapshots, Kafka disks and retention, Kafka TLS and
SCRAM users in prod, the restricted Pod Security Standard, the exact network paths, and the
`release` label kube-prometheus-stack selects on.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.manifests import (
    K8S,
    KUSTOMIZATIONS,
    containers,
    find,
    named,
    pod_labels,
    pod_spec,
    render,
)
from tests.deploy.network import Pod, Policies, cluster, flows

pytestmark = pytest.mark.integration

Objects = tuple[dict[str, Any], ...]
GiB = 1024**3
# Broker disk that topic data may take at most (the rest: metadata, headroom for alerts).
KAFKA_DISK_SHARE = 0.8
THREE_DAYS_MS = 3 * 86_400_000


def workloads(objects: Objects) -> list[dict[str, Any]]:
    return [o for o in objects if pod_spec(o) is not None]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def only_container(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    (container,) = (pod_spec(find(objects, kind, name)) or {})["containers"]
    found: dict[str, Any] = container
    return found


def selected_services(objects: Objects, monitor: dict[str, Any]) -> list[dict[str, Any]]:
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    return [
        s
        for s in objects
        if s["kind"] == "Service" and selector <= s["metadata"].get("labels", {}).items()
    ]


def quantity(text: str) -> int:
    """A Kubernetes binary quantity (Ki/Mi/Gi/Ti) in bytes."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)", text)
    assert match, f"unexpected quantity {text!r}"
    power = ("Ki", "Mi", "Gi", "Ti").index(match[2]) + 1
    size: int = int(match[1]) * 1024**power
    return size


# --- the retrainer's metrics -----------------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_nothing_scrapes_the_one_shot_retrainer(kustomization: str) -> None:
    """The CronJob's pods listen on nothing, so no Service (hence no ServiceMonitor) and no
    PodMonitor may select them: a target that is down between runs fires TargetDown."""
    objects = render(kustomization)
    cronjob = find(objects, "CronJob", "retrainer")
    labels = pod_labels(cronjob).items()
    (container,) = (pod_spec(cronjob) or {})["containers"]
    assert "ports" not in container
    assert "--metrics-port" not in container["args"]
    for obj in objects:
        if obj["kind"] == "Service":
            assert not obj["spec"]["selector"].items() <= labels, obj["metadata"]["name"]
        if obj["kind"] == "PodMonitor":
            selector = obj["spec"]["selector"]["matchLabels"].items()
            assert not selector <= labels, obj["metadata"]["name"]
    assert not any(
        o["kind"] == "ServiceMonitor" and "retrainer" in o["metadata"]["name"] for o in objects
    )


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_retrainer_pushes_to_the_pushgateway(kustomization: str) -> None:
    objects = render(kustomization)
    container = only_container(objects, "CronJob", "retrainer")
    url = urlsplit(env_of(container)["FLYWHEEL_RETRAIN__PUSHGATEWAY_URL"]["value"])
    service = find(objects, "Service", str(url.hostname))
    (port,) = service["spec"]["ports"]
    assert url.port == port["port"]
    deployment = find(objects, "Deployment", "pushgateway")
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
    (pushgateway,) = deployment["spec"]["template"]["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in pushgateway["ports"]}
    assert pushgateway["image"].startswith("prom/pushgateway:v")
    assert pushgateway["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert pushgateway["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    # What was pushed survives a restart: the persistence file is on the claimed volume.
    (flag,) = [a for a in pushgateway["args"] if a.startswith("--persistence.file=")]
    mounts = {m["mountPath"]: m["name"] for m in pushgateway["volumeMounts"]}
    volume = mounts[posixpath.dirname(flag.split("=", 1)[1])]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[volume]["persistentVolumeClaim"]["claimName"]
    find(objects, "PersistentVolumeClaim", claim)
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "one writer of that file"

    (monitor,) = [
        m
        for m in objects
        if m["kind"] == "ServiceMonitor" and service in selected_services(objects, m)
    ]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True, "the pushed job label must survive the scrape"
    assert endpoint["port"] == port["name"]


# --- Qdrant: one scrape per peer, with the API key; snapshots -------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_pod_is_scraped_once_per_port(kustomization: str) -> None:
    """Two Services selecting the same pods under one ServiceMonitor scrape each pod twice."""
    objects = render(kustomization)
    for obj in workloads(objects):
        labels = pod_labels(obj).items()
        seen: list[tuple[str, str]] = []
        for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
            for service in selected_services(objects, monitor):
                if service["spec"]["selector"].items() <= labels:
                    ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
                    seen += [
                        (monitor["metadata"]["name"], ports[e["port"]])
                        for e in monitor["spec"]["endpoints"]
                    ]
        assert len(seen) == len(set(seen)), f"{obj['metadata']['name']} scraped twice: {seen}"
    statefulset = find(objects, "StatefulSet", "qdrant")
    qdrant = [
        m
        for m in objects
        if m["kind"] == "ServiceMonitor"
        and any(
            s["spec"]["selector"].items() <= pod_labels(statefulset).items()
            for s in selected_services(objects, m)
        )
    ]
    assert [m["metadata"]["name"] for m in qdrant] == ["qdrant"]
    assert [s["metadata"]["name"] for s in selected_services(objects, qdrant[0])] == ["qdrant"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_qdrant_is_scraped_with_its_api_key(kustomization: str) -> None:
    objects = render(kustomization)
    (endpoint,) = find(objects, "ServiceMonitor", "qdrant")["spec"]["endpoints"]
    container = only_container(objects, "StatefulSet", "qdrant")
    key = env_of(container)["QDRANT__SERVICE__API_KEY"]["valueFrom"]["secretKeyRef"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": key["name"], "key": key["key"]},
    }


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_qdrant_api_key_is_required(kustomization: str) -> None:
    """An optional key would start Qdrant open, and Prometheus could not authenticate."""
    objects = render(kustomization)
    references = [
        (o["metadata"]["name"], e["valueFrom"]["secretKeyRef"])
        for o in workloads(objects)
        for c in containers(pod_spec(o) or {})
        for e in c.get("env", [])
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "qdrant-api-key"
    ]
    users = {name for name, _ in references}
    assert users == {"qdrant", "encoder-server", "retrainer", "flywheel-index", "qdrant-snapshot"}
    assert all(not ref.get("optional", False) for _, ref in references), references
    secrets = [o for o in objects if o["kind"] == "Secret"]
    if kustomization == "overlays/dev":
        assert find(objects, "Secret", "qdrant-api-key")["data"]["api-key"]
    else:
        assert not any(s["metadata"]["name"] == "qdrant-api-key" for s in secrets)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_qdrant_snapshots_live_on_their_own_volume(kustomization: str) -> None:
    objects = render(kustomization)
    statefulset = find(objects, "StatefulSet", "qdrant")
    container = only_container(objects, "StatefulSet", "qdrant")
    path = env_of(container)["QDRANT__STORAGE__SNAPSHOTS_PATH"]["value"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    claims = {t["metadata"]["name"]: t for t in statefulset["spec"]["volumeClaimTemplates"]}
    assert mount["name"] in claims, "snapshots on a claimed volume, not an emptyDir"
    assert claims[mount["name"]]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert mount["name"] not in {
        v["name"] for v in statefulset["spec"]["template"]["spec"]["volumes"]
    }
    if kustomization == "overlays/prod":
        size = claims[mount["name"]]["spec"]["resources"]["requests"]["storage"]
        assert quantity(size) >= 200 * GiB, "docs/scaling.md: ~156 GB at 10 M products"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_volume_mount_has_a_volume(kustomization: str) -> None:
    """A patch that replaces volumeClaimTemplates must not drop a mounted one."""
    for obj in workloads(render(kustomization)):
        spec = pod_spec(obj) or {}
        names = {v["name"] for v in spec.get("volumes", [])}
        names |= {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
        for container in containers(spec):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in names, f"{obj['metadata']['name']}: {mount['name']}"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_qdrant_snapshot_cronjob(kustomization: str) -> None:
    objects = render(kustomization)
    cronjob = find(objects, "CronJob", "qdrant-snapshot")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert "suspend" not in cronjob["spec"] or cronjob["spec"]["suspend"] is False
    spec = pod_spec(cronjob) or {}
    (container,) = spec["containers"]
    interpreter, script = container["command"]
    assert interpreter == "python"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    config_map = volumes[mounts[posixpath.dirname(script)]]["configMap"]["name"]
    shipped = named(objects, "ConfigMap", config_map)["data"][posixpath.basename(script)]
    assert shipped == (K8S / "base" / "qdrant-snapshot.py").read_text(encoding="utf-8")
    env = env_of(container)
    assert env["FLYWHEEL_QDRANT__API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "qdrant-api-key"
    assert int(env["QDRANT_SNAPSHOT_KEEP"]["value"]) >= 1
    # The script reads the Qdrant URL from flywheel-config (envFrom).
    config = named(objects, "ConfigMap", "flywheel-config")
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in container["envFrom"]
    assert config["data"]["FLYWHEEL_QDRANT__URL"].startswith("http://qdrant:")


# --- Kafka: disks and retention; TLS, SCRAM and ACLs in prod --------------------------------


def kafka_objects(
    objects: Objects,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    kafka = next(o for o in objects if o["kind"] == "Kafka")
    pools = [o for o in objects if o["kind"] == "KafkaNodePool"]
    topics = [o for o in objects if o["kind"] == "KafkaTopic"]
    return kafka, pools, topics


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kafka_retention_fits_the_brokers_disks(kustomization: str) -> None:
    """Per broker: every partition replica it holds keeps at most retention.bytes plus the
    segment being written; that must fit in 80 % of its volume, so no traffic fills it."""
    kafka, pools, topics = kafka_objects(render(kustomization))
    broker_config = kafka["spec"]["kafka"]["config"]
    (pool,) = pools
    brokers = pool["spec"]["replicas"]
    (volume,) = pool["spec"]["storage"]["volumes"]
    used = 0.0
    for topic in topics:
        config = topic["spec"]["config"]
        assert config["retention.bytes"] > 0, f"{topic['metadata']['name']}: unbounded"
        segment = config.get("segment.bytes", broker_config["log.segment.bytes"])
        replicas_per_broker = topic["spec"]["partitions"] * topic["spec"]["replicas"] / brokers
        used += replicas_per_broker * (config["retention.bytes"] + segment)
    assert used <= KAFKA_DISK_SHARE * quantity(volume["size"]), (used / GiB, volume["size"])
    # The broker's own defaults bound any other topic the same way.
    assert broker_config["log.retention.bytes"] > 0
    assert broker_config["log.retention.ms"] == THREE_DAYS_MS


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kafka_events_kept_three_days(kustomization: str) -> None:
    _, _, topics = kafka_objects(render(kustomization))
    retention = {t["spec"]["topicName"]: t["spec"]["config"]["retention.ms"] for t in topics}
    assert retention == {"flywheel.events": THREE_DAYS_MS, "flywheel.events.dlq": 30 * 86_400_000}


def test_prod_kafka_sized_for_500_searches_per_second() -> None:
    """docs/scaling.md: 500 searches/s x 4.5 KB = 194 GB/day per replica; 3 days = 543 GiB
    per broker, 45 GiB per partition, under retention.bytes (the time limit governs)."""
    _, pools, topics = kafka_objects(render("overlays/prod"))
    (events,) = [t for t in topics if t["spec"]["topicName"] == "flywheel.events"]
    per_partition_3_days = 500 * 4_500 * 3 * 86_400 / events["spec"]["partitions"]
    assert per_partition_3_days <= events["spec"]["config"]["retention.bytes"]
    (volume,) = pools[0]["spec"]["storage"]["volumes"]
    assert volume["size"] == "800Gi"
    assert "800 GiB" in (K8S.parent / "docs" / "scaling.md").read_text(encoding="utf-8")


def kafka_clients(objects: Objects) -> set[str]:
    """Apps whose egress reaches the Kafka brokers."""
    pods, policies = cluster(objects)
    (broker,) = [p for p in pods if p.name == "kafka"]
    return {
        p.name
        for p in pods
        if not p.name.startswith("kafka")
        and any(policies.allows(p, broker, port) for port in broker.ports)
    }


def test_prod_kafka_tls_scram_and_acls() -> None:
    objects = render("overlays/prod")
    kafka, _, topics = kafka_objects(objects)
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    name = kafka["metadata"]["name"]
    config = named(objects, "ConfigMap", "flywheel-config")["data"]
    assert (
        config["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"] == f"{name}-kafka-bootstrap:{listener['port']}"
    )
    assert config["FLYWHEEL_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["FLYWHEEL_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"

    users = {u["metadata"]["name"]: u for u in objects if u["kind"] == "KafkaUser"}
    clients = kafka_clients(objects)
    assert clients == {"encoder-server", "feedback-ingest"}, "the retrainer does not use Kafka"
    assert set(users) == clients
    events, dlq = (
        next(t["spec"]["topicName"] for t in topics if t["metadata"]["name"] == n)
        for n in ("flywheel-events", "flywheel-events-dlq")
    )
    expected = {
        "encoder-server": {events: {"Describe", "Write"}, dlq: {"Describe"}},
        "feedback-ingest": {events: {"Describe", "Read"}, dlq: {"Describe", "Write"}},
    }
    for user_name, user in users.items():
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == name
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        acls = user["spec"]["authorization"]["acls"]
        assert all(a["resource"]["type"] == "topic" for a in acls), "no group or cluster rights"
        assert all(a["resource"]["patternType"] == "literal" for a in acls)
        granted = {a["resource"]["name"]: set(a["operations"]) for a in acls}
        assert granted == expected[user_name]

        # The client logs in as its user, with the password Strimzi writes to the user's
        # Secret, and trusts the cluster CA mounted where FLYWHEEL_KAFKA__SSL_CAFILE points.
        deployment = find(objects, "Deployment", user_name)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        assert env["FLYWHEEL_KAFKA__SASL_USERNAME"]["value"] == user_name
        assert env["FLYWHEEL_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": user_name,
            "key": "password",
        }
        cafile = config["FLYWHEEL_KAFKA__SSL_CAFILE"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        secret = volumes[mounts[posixpath.dirname(cafile)]]["secret"]
        assert secret["secretName"] == f"{name}-cluster-ca-cert"
        assert {"key": "ca.crt", "path": posixpath.basename(cafile)} in secret["items"]


@pytest.mark.parametrize("kustomization", ["base", "overlays/dev"])
def test_kafka_outside_prod_is_plaintext_for_its_two_clients(kustomization: str) -> None:
    objects = render(kustomization)
    kafka, _, _ = kafka_objects(objects)
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is False and "authentication" not in listener
    assert not any(o["kind"] == "KafkaUser" for o in objects)
    assert kafka_clients(objects) == {"encoder-server", "feedback-ingest"}


# --- Pod Security: restricted, enforced -----------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_namespace_enforces_restricted(kustomization: str) -> None:
    (namespace,) = [o for o in render(kustomization) if o["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def restricted_problems(where: str, pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """What the `restricted` Pod Security Standard refuses in one container of a pod."""
    problems = []
    if not (container.get("runAsNonRoot") or pod.get("runAsNonRoot")):
        problems.append(f"{where}: runAsNonRoot unset")
    if 0 in (container.get("runAsUser"), pod.get("runAsUser")):
        problems.append(f"{where}: runs as UID 0")
    seccomp = container.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
    if seccomp not in {"RuntimeDefault", "Localhost"}:
        problems.append(f"{where}: seccomp profile {seccomp}")
    if container.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation not false")
    if container.get("privileged"):
        problems.append(f"{where}: privileged")
    capabilities = container.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
        problems.append(f"{where}: capabilities not dropped")
    if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
        problems.append(f"{where}: adds capabilities")
    return problems


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_pod_meets_restricted(kustomization: str) -> None:
    objects = render(kustomization)
    problems = []
    for obj in workloads(objects):
        spec = pod_spec(obj) or {}
        pod = spec.get("securityContext", {})
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key):
                problems.append(f"{obj['metadata']['name']}: {key}")
        for volume in spec.get("volumes", []):
            if "hostPath" in volume:
                problems.append(f"{obj['metadata']['name']}: hostPath volume")
        for container in containers(spec):
            where = f"{obj['metadata']['name']}/{container['name']}"
            problems += restricted_problems(where, pod, container.get("securityContext", {}))
    # Strimzi's pods, from the templates in the Kafka resource.
    kafka, _, _ = kafka_objects(objects)
    for owner, template, names in (
        ("kafka", kafka["spec"]["kafka"]["template"], ("kafkaContainer", "initContainer")),
        ("kafka-exporter", kafka["spec"]["kafkaExporter"]["template"], ("container",)),
        (
            "entity-operator",
            kafka["spec"]["entityOperator"]["template"],
            ("topicOperatorContainer", "userOperatorContainer"),
        ),
    ):
        pod = template["pod"]["securityContext"]
        for name in names:
            problems += restricted_problems(
                f"{owner}/{name}", pod, template[name]["securityContext"]
            )
    assert not problems, "\n".join(problems)


def test_restricted_check_catches_mistakes() -> None:
    """Guards the guard."""
    good = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    container = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert restricted_problems("x", good, container) == []
    assert restricted_problems("x", {**good, "runAsUser": 0}, container)
    assert restricted_problems("x", {"runAsNonRoot": True}, container)
    assert restricted_problems("x", good, {**container, "capabilities": {"drop": ["NET_RAW"]}})
    assert restricted_problems("x", good, {"capabilities": {"drop": ["ALL"]}})


# --- encoder-server's metrics port ------------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_search_metrics_on_their_own_port(kustomization: str) -> None:
    objects = render(kustomization)
    container = only_container(objects, "Deployment", "encoder-server")
    port = int(env_of(container)["FLYWHEEL_SERVER__METRICS_PORT"]["value"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "metrics": port}
    service = find(objects, "Service", "encoder-server")
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    assert by_name["metrics"]["targetPort"] == "metrics"
    (endpoint,) = find(objects, "ServiceMonitor", "encoder-server")["spec"]["endpoints"]
    assert endpoint["port"] == "metrics", "the API port answers 404 for /metrics"


# --- network paths ----------------------------------------------------------------------------

PROMETHEUS = Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
GRAFANA = Pod("grafana", "monitoring", {"app.kubernetes.io/name": "grafana"})
INGRESS = Pod("ingress", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
STRANGER = Pod("stranger", "default", {"app": "stranger"})

BASE_FLOWS = {
    ("prometheus", "encoder-server", 9467),
    ("prometheus", "feedback-ingest", 9464),
    ("prometheus", "canary-controller", 9466),
    ("prometheus", "pushgateway", 9091),
    ("prometheus", "qdrant", 6333),
    ("prometheus", "kafka-exporter", 9404),
    ("encoder-server", "qdrant", 6333),
    ("encoder-server", "qdrant", 6334),
    ("retrainer", "qdrant", 6333),
    ("retrainer", "qdrant", 6334),
    ("retrainer", "pushgateway", 9091),
    ("flywheel-index", "qdrant", 6333),
    ("flywheel-index", "qdrant", 6334),
    ("qdrant-snapshot", "qdrant", 6333),
    ("qdrant", "qdrant", 6333),
    ("qdrant", "qdrant", 6334),
    ("qdrant", "qdrant", 6335),
}


def expected_flows(kustomization: str) -> set[tuple[str, str, int]]:
    kafka = 9093 if kustomization == "overlays/prod" else 9092
    # The public API: from the ingress controller only in prod; elsewhere from any pod whose
    # egress is open (Flywheel's own pods have none but what they need).
    public = (
        {"ingress"}
        if kustomization == "overlays/prod"
        else {"ingress", "stranger", "grafana", "prometheus", "kafka", "kafka-exporter"}
    )
    return (
        BASE_FLOWS
        | {("encoder-server", "kafka", kafka), ("feedback-ingest", "kafka", kafka)}
        | {(source, "encoder-server", 8000) for source in public}
    )


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_network_policies_allow_exactly_the_paths_flywheel_uses(kustomization: str) -> None:
    pods, policies = cluster(render(kustomization))
    sources = [*pods, PROMETHEUS, GRAFANA, INGRESS, STRANGER]
    allowed = flows(sources, pods, policies)
    expected = expected_flows(kustomization)
    assert allowed == expected, {"unexpected": allowed - expected, "missing": expected - allowed}


def test_network_evaluator_catches_mistakes() -> None:
    """Guards the guard: a policy without `from` admits everyone, a pod selector alone only
    its own namespace, and egress rules bind their source."""
    server = Pod("s", "flywheel", {"app.kubernetes.io/name": "s"}, frozenset({80}))
    client = Pod("c", "flywheel", {"app.kubernetes.io/name": "c"})
    deny = ("flywheel", {"podSelector": {}, "policyTypes": ["Ingress"]})
    assert not Policies((deny,)).allows(client, server, 80)
    by_pod = (
        "flywheel",
        {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "s"}},
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "c"}}}],
                    "ports": [{"port": 80}],
                }
            ],
        },
    )
    assert Policies((deny, by_pod)).allows(client, server, 80)
    assert not Policies((deny, by_pod)).allows(client, server, 81)
    elsewhere = Pod("c", "other", {"app.kubernetes.io/name": "c"})
    assert not Policies((deny, by_pod)).allows(elsewhere, server, 80)
    no_egress = (
        "flywheel",
        {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "c"}},
            "policyTypes": ["Egress"],
        },
    )
    assert not Policies((by_pod, no_egress)).allows(client, server, 80)


# --- kube-prometheus-stack's selector -------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_release_label_on_monitoring_objects_in_prod(kustomization: str) -> None:
    objects = render(kustomization)
    monitoring = [
        o for o in objects if o["kind"] in {"ServiceMonitor", "PrometheusRule", "PodMonitor"}
    ]
    assert {o["kind"] for o in monitoring} >= {"ServiceMonitor", "PrometheusRule"}
    releases = {o["metadata"]["labels"].get("release") for o in monitoring}
    if kustomization == "overlays/prod":
        assert releases == {"kube-prometheus-stack"}
        # Only these kinds: a `release` label elsewhere, or in a selector, would be noise.
        others = [o for o in objects if o not in monitoring]
        assert not any("release" in o["metadata"].get("labels", {}) for o in others)
    else:
        assert releases == {None}
