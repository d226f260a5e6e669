"""Prometheus config, recording rules and alerts: promtool accepts them, the unit tests in
deploy/prometheus/rules/tests.yml make every alert fire, and every series they (and the
dashboards) read is one services/metrics.py declares, with labels it has."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from services import metrics
from tests.observability.promql import (
    PROMETHEUS_CONFIG,
    REQUIRED_ALERTS,
    RULE_FILES,
    RULE_TESTS,
    STANDARD_SERIES,
    all_expressions,
    load_rules,
    metric_selectors,
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
    assert "SUCCESS: 2 rule files found" in result.stdout
    for path in RULE_FILES:
        assert f"Checking {path}" in result.stdout


def test_config_scrapes_the_flywheel_processes() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {
        "flywheel-search": ["encoder-server:8000"],
        "flywheel-ingest": ["feedback-ingest:9464"],
        "flywheel-retrainer": ["retrainer:9465"],
        "flywheel-canary": ["canary-controller:9466"],
    }
    resolved = {(PROMETHEUS_CONFIG.parent / f).resolve() for f in config["rule_files"]}
    assert resolved == {p.resolve() for p in RULE_FILES}


@needs_promtool
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rule_unit_tests_make_every_alert_fire() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert {Path(f).name for f in tests["rule_files"]} == {p.name for p in RULE_FILES}
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in load_rules() if "alert" in rule}
    assert alerts >= REQUIRED_ALERTS
    assert fired == alerts


def test_alerts_carry_severity_and_annotations() -> None:
    for rule in load_rules():
        if "alert" not in rule:
            continue
        assert rule["alert"].startswith("Flywheel"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


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
                unknown = set(labels) - samples[name] - {"job", "instance"}
                if unknown:
                    problems.append(f"{expr.name}: {name} has no label {sorted(unknown)}")
    assert not problems, "\n".join(problems)
