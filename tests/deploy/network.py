"""NetworkPolicy semantics, offline: which (source pod, destination pod, TCP port) a set of
policies allows, so tests can compare the rendered policies with the flows Flywheel needs.

Covers what the manifests use: pod and namespace selectors (matchLabels, matchExpressions),
numeric ports, Ingress and Egress policy types, and Strimzi's generated policy for each Kafka
listener (its networkPolicyPeers may reach the listener port). A namespace's labels are its
`kubernetes.io/metadata.name`, as the API server sets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.deploy.manifests import pod_labels, pod_spec

NAMESPACE = "flywheel"


@dataclass(frozen=True)
class Pod:
    """A pod as policies see it: its name for the test, namespace, labels and listening ports."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    ports: frozenset[int] = field(default_factory=frozenset)


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a label selector matches `labels` (an empty selector matches everything)."""
    if selector is None:
        return True
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = set(expression.get("values", []))
        match operator:
            case "In":
                ok = key in labels and labels[key] in values
            case "NotIn":
                ok = key not in labels or labels[key] not in values
            case "Exists":
                ok = key in labels
            case "DoesNotExist":
                ok = key not in labels
            case _:
                raise ValueError(f"unknown selector operator {operator!r}")
        if not ok:
            return False
    return True


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        raise ValueError("ipBlock peers are not modelled")
    namespaces = peer.get("namespaceSelector")
    if namespaces is None:
        in_namespace = pod.namespace == policy_namespace
    else:
        in_namespace = selects(namespaces, {"kubernetes.io/metadata.name": pod.namespace})
    return in_namespace and selects(peer.get("podSelector"), pod.labels)


def _port_matches(ports: Iterable[Mapping[str, Any]] | None, port: int) -> bool:
    if ports is None:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        start = entry.get("port")
        if start is None:
            return True
        if not isinstance(start, int):
            raise ValueError(f"named port {start!r} is not modelled")
        if start <= port <= entry.get("endPort", start):
            return True
    return False


def _types(spec: Mapping[str, Any]) -> list[str]:
    declared: list[str] | None = spec.get("policyTypes")
    if declared is not None:
        return declared
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


@dataclass(frozen=True)
class Policies:
    """NetworkPolicy specs (with their namespace) and the questions asked of them."""

    specs: tuple[tuple[str, Mapping[str, Any]], ...]

    def _admits(self, pod: Pod, kind: str, peer: Pod, port: int) -> bool:
        """Whether the `kind` ("Ingress" or "Egress") policies selecting `pod` let it talk to
        `peer` on `port` (no such policy: they do)."""
        rules, peers = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
        applying = [
            spec
            for namespace, spec in self.specs
            if namespace == pod.namespace
            and kind in _types(spec)
            and selects(spec["podSelector"], pod.labels)
        ]
        return not applying or any(
            _port_matches(rule.get("ports"), port)
            and (
                peers not in rule or any(_peer_matches(p, pod.namespace, peer) for p in rule[peers])
            )
            for spec in applying
            for rule in spec.get(rules, [])
        )

    def allows(self, source: Pod, destination: Pod, port: int) -> bool:
        """Whether a TCP connection from `source` to `destination:port` is allowed."""
        return self._admits(destination, "Ingress", source, port) and self._admits(
            source, "Egress", destination, port
        )


def kafka_broker(kafka: Mapping[str, Any]) -> Pod:
    """A broker of the Strimzi Kafka cluster, with its labels and listener ports."""
    name = kafka["metadata"]["name"]
    ports = frozenset(int(listener["port"]) for listener in kafka["spec"]["kafka"]["listeners"])
    labels = {
        "strimzi.io/cluster": name,
        "strimzi.io/kind": "Kafka",
        "strimzi.io/name": f"{name}-kafka",
    }
    return Pod("kafka", NAMESPACE, labels, ports)


def kafka_exporter(kafka: Mapping[str, Any]) -> Pod | None:
    """Strimzi's Kafka Exporter pod (port 9404), if the Kafka resource asks for one."""
    if "kafkaExporter" not in kafka["spec"]:
        return None
    name = kafka["metadata"]["name"]
    labels = {
        "strimzi.io/cluster": name,
        "strimzi.io/kind": "Kafka",
        "strimzi.io/name": f"{name}-kafka-exporter",
    }
    return Pod("kafka-exporter", NAMESPACE, labels, frozenset({9404}))


def strimzi_policy(kafka: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ingress Strimzi generates for the brokers: each listener's peers on its port."""
    broker = kafka_broker(kafka)
    rules = []
    for listener in kafka["spec"]["kafka"]["listeners"]:
        rule: dict[str, Any] = {"ports": [{"port": int(listener["port"]), "protocol": "TCP"}]}
        if "networkPolicyPeers" in listener:
            rule["from"] = listener["networkPolicyPeers"]
        rules.append(rule)
    return {
        "podSelector": {"matchLabels": dict(broker.labels)},
        "policyTypes": ["Ingress"],
        "ingress": rules,
    }


def cluster(objects: Iterable[Mapping[str, Any]]) -> tuple[list[Pod], Policies]:
    """The pods of the rendered objects (one per workload, a Kafka broker and exporter) and every
    policy that governs them (the rendered NetworkPolicies and Strimzi's)."""
    pods: list[Pod] = []
    specs: list[tuple[str, Mapping[str, Any]]] = []
    for obj in objects:
        spec = pod_spec(dict(obj))
        if spec is not None:
            labels = pod_labels(dict(obj))
            ports = frozenset(
                int(port["containerPort"])
                for container in spec.get("containers", [])
                for port in container.get("ports", [])
            )
            pods.append(Pod(labels["app.kubernetes.io/name"], NAMESPACE, labels, ports))
        elif obj["kind"] == "NetworkPolicy":
            specs.append((NAMESPACE, obj["spec"]))
        elif obj["kind"] == "Kafka":
            pods.append(kafka_broker(obj))
            exporter = kafka_exporter(obj)
            if exporter is not None:
                pods.append(exporter)
            specs.append((NAMESPACE, strimzi_policy(obj)))
    return pods, Policies(tuple(specs))


def flows(
    sources: Iterable[Pod], destinations: Iterable[Pod], policies: Policies
) -> set[tuple[str, str, int]]:
    """Every (source, destination, port) allowed, over the destinations' listening ports."""
    targets = list(destinations)
    return {
        (source.name, destination.name, port)
        for source in sources
        for destination in targets
        for port in sorted(destination.ports)
        if policies.allows(source, destination, port)
    }
