"""deploy/compose.yaml against the Compose Specification's JSON schema, and its wiring.

The schema is tests/deploy/compose-spec.json: the Compose Specification's
schema/compose-spec.json (Apache-2.0, The Compose Specification Authors), as shipped in the
npm package dclint 3.1.0 (schemas/compose.schema.json); see compose-spec.NOTICE.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.manifests import (
    COMPOSE,
    compose,
    compose_command,
    readme_commands,
    unknown_setting,
)

pytestmark = pytest.mark.integration

# Imported by name: jsonschema ships no type information (types-jsonschema is not installed).
jsonschema = importlib.import_module("jsonschema")

SCHEMA = Path(__file__).with_name("compose-spec.json")
FLYWHEEL_SERVICES = {
    "index",
    "encoder-server",
    "feedback-ingest",
    "retrainer",
    "canary-controller",
}


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def command(name: str) -> list[str]:
    found = compose_command(services()[name])
    assert found, f"{name} must say which flywheel command it runs"
    return found


def test_validates_against_the_compose_spec() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose())
    ]
    assert not errors, "\n".join(errors)


def test_the_schema_catches_mistakes() -> None:
    """Guards the guard: a misspelt key and a bad depends_on condition are refused."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    broken = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    broken["services"]["kafka"]["helthcheck"] = {}
    broken["services"]["index"]["depends_on"]["qdrant"]["condition"] = "service_ready"
    assert len(list(validator.iter_errors(broken))) == 2


def test_services_and_dependencies() -> None:
    found = services()
    assert {"qdrant", "kafka", "prometheus", "grafana"} | FLYWHEEL_SERVICES <= set(found)
    for name, service in found.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in found, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in found[dependency], f"{dependency} has no healthcheck"
    assert found["encoder-server"]["depends_on"]["index"]["condition"] == (
        "service_completed_successfully"
    )
    assert found["index"].get("restart") == "no"


def test_long_running_services_have_healthchecks() -> None:
    for name, service in services().items():
        if name != "index":
            assert "healthcheck" in service, f"{name} has no healthcheck"


@pytest.mark.parametrize("name", sorted(FLYWHEEL_SERVICES))
def test_flywheel_commands_are_readme_commands(name: str) -> None:
    assert command(name)[0] in readme_commands()


def test_expected_commands() -> None:
    assert command("encoder-server")[:3] == ["serve", "--host", "0.0.0.0"]
    assert command("feedback-ingest") == ["ingest"]
    assert command("retrainer") == [
        "retrain",
        "--every",
        "6h",
        "--metrics-port",
        "9465",
    ]
    assert command("index")[:2] == ["index", "--catalog"]
    assert command("canary-controller") == [
        "canary",
        "watch",
        "--every",
        "60",
        "--metrics-port",
        "9466",
    ]


def test_images_and_builds() -> None:
    found = services()
    for name in FLYWHEEL_SERVICES:
        build = found[name]["build"]
        serve = {"encoder-server", "feedback-ingest", "canary-controller"}
        target = "serve" if name in serve else "train"
        assert build["target"] == target, f"{name} runs the {target} image"
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file()
        assert found[name]["image"] == f"flywheel:{target}"


def test_flywheel_settings_exist_and_point_inside_the_stack() -> None:
    found = services()
    for name in FLYWHEEL_SERVICES:
        env = found[name]["environment"]
        problems = [p for p in map(unknown_setting, env) if p]
        assert not problems, problems
        assert env["FLYWHEEL_QDRANT__URL"] == "http://qdrant:6333"
        assert env["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["FLYWHEEL_HOME"] == "/var/lib/flywheel"
        assert "flywheel-home:/var/lib/flywheel" in found[name]["volumes"]
        # An empty admin token would open the admin endpoints; it may only come from a file.
        assert "FLYWHEEL_SERVER__ADMIN_TOKEN" not in env
    assert "kafka:9092" in found["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert found["feedback-ingest"]["environment"]["FLYWHEEL_INGEST__METRICS_HOST"] == "0.0.0.0"


def test_mounted_folders_exist() -> None:
    """Prometheus and Grafana read the repository's config (deploy/prometheus, deploy/grafana)."""
    for name in ("prometheus", "grafana"):
        for volume in services()[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).is_dir(), f"{name}: {source} is missing"


def prometheus_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        (COMPOSE.parent / "prometheus" / "prometheus.yml").read_text()
    )
    return config


def test_prometheus_scrapes_the_compose_services() -> None:
    """Every static target of deploy/prometheus/prometheus.yml is a compose service and port."""
    found = services()
    ports = {
        "encoder-server": found["encoder-server"]["environment"]["FLYWHEEL_SERVER__METRICS_PORT"],
        "feedback-ingest": found["feedback-ingest"]["environment"]["FLYWHEEL_INGEST__METRICS_PORT"],
        "canary-controller": command("canary-controller")[-1],
        "pushgateway": "9091",
    }
    targets = {
        target
        for job in prometheus_config()["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert targets == {f"{host}:{port}" for host, port in ports.items()}
    for target in targets:
        assert target.split(":")[0] in found, f"{target}: no such compose service"


def test_search_metrics_are_not_on_the_published_port() -> None:
    """The API port is published to the host; /metrics is on a port of its own."""
    server = services()["encoder-server"]
    metrics = server["environment"]["FLYWHEEL_SERVER__METRICS_PORT"]
    assert all(not p.endswith(f":{metrics}") for p in server["ports"])
    assert command("encoder-server")[command("encoder-server").index("--port") + 1] != metrics


def test_retrainer_metrics_go_through_the_pushgateway() -> None:
    """The retrainer pushes after every run; Prometheus scrapes the Pushgateway with
    honor_labels (the pushed job label survives) and not the retrainer itself, whose series
    would otherwise be counted twice."""
    found = services()
    url = urlsplit(found["retrainer"]["environment"]["FLYWHEEL_RETRAIN__PUSHGATEWAY_URL"])
    pushgateway = found[str(url.hostname)]
    assert pushgateway["image"].startswith("prom/pushgateway:v")
    assert url.port == 9091
    assert found["retrainer"]["depends_on"][str(url.hostname)]["condition"] == "service_healthy"
    flags = dict(a.split("=", 1) for a in pushgateway["command"])
    volume = next(v for v in pushgateway["volumes"] if v.split(":")[1] == "/pushgateway")
    assert flags["--persistence.file"].startswith("/pushgateway/")
    assert volume.split(":")[0] in compose()["volumes"]
    (job,) = [
        j
        for j in prometheus_config()["scrape_configs"]
        if f"{url.hostname}:{url.port}" in j["static_configs"][0]["targets"]
    ]
    assert job["honor_labels"] is True
    assert job["job_name"] != "flywheel-retrainer", "that name belongs to the pushed series"
    retrainer_port = command("retrainer")[-1]
    assert all(
        not t.startswith("retrainer:")
        for j in prometheus_config()["scrape_configs"]
        for t in j["static_configs"][0]["targets"]
    ), f"retrainer:{retrainer_port} serves the healthcheck only"
