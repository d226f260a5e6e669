"""Prometheus config, recording rules, SLOs and alerts: promtool accepts them, the unit tests
in deploy/prometheus/rules/*tests.yml make every alert fire at every severity, every alert
links to its section of docs/runbooks.md, no aggregation merges two deployments, and every
series they (and the dashboards) read is one services/metrics.py declares, with labels it
has. The Kubernetes-only alerts (k8s/base/prometheus-rules-kubernetes.yaml) are held to the
same unit tests, runbooks and deployment labels."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from services import metrics
from tests.observability.promql import (
    KUBERNETES_RULE_FILE,
    KUBERNETES_RULE_TESTS,
    PROMETHEUS_CONFIG,
    REQUIRED_ALERTS,
    RULE_FILES,
    RULE_TESTS,
    RUNBOOK_BASE,
    RUNBOOKS,
    STANDARD_SERIES,
    TARGET_LABELS,
    all_expressions,
    kubernetes_rule_groups,
    load_rules,
    merges_deployments,
    metric_selectors,
    runbook_anchors,
    stage_kubernetes_rule_tests,
)

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (make system-deps installs the Debian prometheus package)",
)

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def declared() -> dict[str, set[str]]:
    """Sample name → label names, for every metric in services/metrics.py."""
    samples: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name, kind = value._name, str(value._type)
            labels = set(value._labelnames)
            for suffix in SUFFIXES[kind]:
                samples[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return samples


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)


@needs_promtool
def test_promtool_check_config_with_its_rule_files() -> None:
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    # rule_files are relative to the config's folder; promtool resolves and checks each.
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout
    for path in RULE_FILES:
        assert f"Checking {path}" in result.stdout


def test_config_scrapes_the_flywheel_processes() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    # encoder-server's /metrics has a port of its own; the one-shot retrainer pushes to the
    # Pushgateway, whose job keeps the pushed job="flywheel-retrainer" (honor_labels)
    assert targets == {
        "flywheel-search": ["encoder-server:9467"],
        "flywheel-ingest": ["feedback-ingest:9464"],
        "flywheel-pushgateway": ["pushgateway:9091"],
        "flywheel-canary": ["canary-controller:9466"],
    }
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["flywheel-pushgateway"]["honor_labels"] is True
    resolved = {(PROMETHEUS_CONFIG.parent / f).resolve() for f in config["rule_files"]}
    assert resolved == {p.resolve() for p in RULE_FILES}


@needs_promtool
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def kubernetes_rules() -> list[dict[str, Any]]:
    return [rule for group in kubernetes_rule_groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule: deploy/prometheus/rules and the Kubernetes-only PrometheusRule."""
    return [rule for rule in load_rules() + kubernetes_rules() if "alert" in rule]


def unit_tests() -> list[dict[str, Any]]:
    return [
        yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in (*RULE_TESTS, KUBERNETES_RULE_TESTS)
    ]


@needs_promtool
@pytest.mark.parametrize("tests", RULE_TESTS, ids=lambda path: path.name)
def test_promtool_rule_unit_tests_pass(tests: Path) -> None:
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_kubernetes_alerts_pass(tmp_path: Path) -> None:
    result = promtool("test", "rules", str(stage_kubernetes_rule_tests(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_cover_exactly_the_rule_files() -> None:
    *shared, kubernetes = unit_tests()
    assert {Path(f).name for tests in shared for f in tests["rule_files"]} == {
        p.name for p in RULE_FILES
    }
    assert kubernetes["rule_files"] == [KUBERNETES_RULE_FILE]


def test_every_alert_fires_in_a_unit_test_at_each_of_its_severities() -> None:
    fired = {
        (case["alertname"], alert["exp_labels"]["severity"])
        for tests in unit_tests()
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        for alert in case.get("exp_alerts") or []
    }
    defined = {(rule["alert"], rule["labels"]["severity"]) for rule in alerts()}
    assert {name for name, _ in defined} >= REQUIRED_ALERTS
    assert fired == defined


def test_alerts_carry_severity_and_annotations() -> None:
    for rule in alerts():
        assert rule["alert"].startswith("Flywheel"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        # The prose lives in docs/runbooks.md, not in the annotations.
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, rule["alert"]


def test_every_runbook_url_points_at_its_section_of_the_runbooks() -> None:
    anchors = runbook_anchors()
    for rule in alerts():
        url = rule["annotations"]["runbook_url"]
        assert url == f"{RUNBOOK_BASE}#{rule['alert'].lower()}", rule["alert"]
        assert url.partition("#")[2] in anchors, f"docs/runbooks.md has no section {url}"


def test_runbook_links_within_the_page_resolve() -> None:
    links = set(re.findall(r"\]\(#([^)]+)\)", RUNBOOKS.read_text(encoding="utf-8")))
    assert links
    assert links <= runbook_anchors()


def test_no_alert_or_slo_rule_merges_two_deployments() -> None:
    """Every aggregation and join keeps cluster and namespace (recording.yml is held to the
    same by test_recording_rules.py)."""
    files = [path for path in RULE_FILES if path.name != "recording.yml"]
    rules = [
        rule
        for path in files
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    ] + kubernetes_rules()
    assert len(rules) > len(alerts())
    problems = [
        f"{rule.get('alert') or rule.get('record')}: {found}"
        for rule in rules
        for found in merges_deployments(rule["expr"])
    ]
    assert not problems, "\n".join(problems)


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for rule in load_rules():
        if "record" in rule:
            level, metric, operations = rule["record"].split(":")
            assert level and operations, rule["record"]
            assert metric.startswith("flywheel_"), rule["record"]


def test_every_series_read_is_declared_with_those_labels() -> None:
    samples = declared()
    recorded = {rule["record"] for rule in load_rules() if "record" in rule}
    problems = []
    for expr in all_expressions():
        for name, labels in metric_selectors(expr.expr):
            if ":" in name:
                if name not in recorded:
                    problems.append(f"{expr.name}: {name} is not a recording rule")
            elif name in STANDARD_SERIES:
                continue
            elif name not in samples:
                problems.append(f"{expr.name}: {name} is not declared in services/metrics.py")
            else:
                unknown = set(labels) - samples[name] - TARGET_LABELS
                if unknown:
                    problems.append(f"{expr.name}: {name} has no label {sorted(unknown)}")
    assert not problems, "\n".join(problems)
