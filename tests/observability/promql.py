"""Where Flywheel's PromQL lives (dashboards, recording rules, alerts) and small tools for it.

Shared by the offline checks in tests/observability and the live Prometheus test in
tests/integration/test_prometheus_live.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy.grafana.dashboards_src import DASHBOARDS_DIR, panel_queries

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
# The rule files prometheus.yml loads, and the promtool unit tests of them.
RULE_FILES = (RULES_DIR / "recording.yml", RULES_DIR / "alerts.yml", RULES_DIR / "slo.yml")
RULE_TESTS = (RULES_DIR / "tests.yml", RULES_DIR / "slo_tests.yml")
# The Kubernetes-only alerts, a PrometheusRule, and their promtool unit tests, which name
# its groups as a plain rule file (written by stage_kubernetes_rule_tests).
KUBERNETES_RULES = ROOT / "k8s" / "base" / "prometheus-rules-kubernetes.yaml"
KUBERNETES_RULE_TESTS = RULES_DIR / "kubernetes_tests.yml"
KUBERNETES_RULE_FILE = "prometheus-rules-kubernetes.yml"
# Every alert's runbook_url is this page plus "#" and the alert's section.
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/flywheel-search/flywheel/blob/main/docs/runbooks.md"

REQUIRED_ALERTS = {
    "FlywheelSearchAvailabilityBurnRate",
    "FlywheelSearchLatencyBurnRate",
    "FlywheelEventsAvailabilityBurnRate",
    "FlywheelSearchLatencyHigh",
    "FlywheelConsumerLag",
    "FlywheelOnlineNdcgDrop",
    "FlywheelCanaryRolledBack",
    "FlywheelRetrainFailing",
    "FlywheelRetrainStale",
    "FlywheelEventsDropped",
    "FlywheelModelSwapFailed",
    "FlywheelDeadLettersHigh",
}

# Series Prometheus or the client library add to every target (not declared by Flywheel).
STANDARD_SERIES = {"up", "process_start_time_seconds"}
# Labels the scrape adds to every series: job and instance, and where several deployments
# share a Prometheus, the deployment's namespace (Kubernetes) and cluster.
TARGET_LABELS = {"job", "instance", "cluster", "namespace"}


@dataclass(frozen=True, slots=True)
class Expr:
    """One PromQL expression and where it is defined."""

    kind: str  # "panel", "record" or "alert"
    name: str
    expr: str
    panel: str = ""  # the panel's title, for kind "panel"


def load_rules() -> list[dict[str, Any]]:
    """Every rule (recording and alerting) of the rule files Prometheus loads."""
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            rules.extend(group["rules"])
    return rules


def kubernetes_rule_groups() -> list[dict[str, Any]]:
    """The rule groups of the Kubernetes-only PrometheusRule."""
    document = yaml.safe_load(KUBERNETES_RULES.read_text(encoding="utf-8"))
    groups: list[dict[str, Any]] = document["spec"]["groups"]
    return groups


def stage_kubernetes_rule_tests(folder: Path) -> Path:
    """Write the Kubernetes-only rules as a plain rule file into ``folder``, beside a copy of
    their unit tests, and return the copy's path (for ``promtool test rules``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rules = folder / KUBERNETES_RULE_FILE
    rules.write_text(yaml.safe_dump({"groups": kubernetes_rule_groups()}), encoding="utf-8")
    tests = folder / KUBERNETES_RULE_TESTS.name
    tests.write_text(KUBERNETES_RULE_TESTS.read_text(encoding="utf-8"), encoding="utf-8")
    return tests


def runbook_anchors() -> set[str]:
    """The anchors GitHub gives the headings of docs/runbooks.md (lower case, punctuation
    other than - and _ dropped, spaces as -)."""
    text = re.sub(r"^```.*?^```", "", RUNBOOKS.read_text(encoding="utf-8"), flags=re.M | re.S)
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def dashboards() -> dict[str, dict[str, Any]]:
    """File name → parsed JSON of every committed dashboard."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def all_expressions() -> list[Expr]:
    """Dashboard queries (Grafana macros left in), then recording rules, then alerts."""
    found = [
        Expr(
            "panel",
            f"{q.dashboard} / {q.panel}" + (f" / {q.ref_id}" if q.ref_id else ""),
            q.expr,
            q.panel,
        )
        for document in dashboards().values()
        for q in panel_queries(document)
    ]
    for rule in load_rules():
        if "record" in rule:
            found.append(Expr("record", rule["record"], rule["expr"]))
        else:
            found.append(Expr("alert", rule["alert"], rule["expr"]))
    return found


def with_grafana_macros(
    expr: str, *, rate_interval: str = "1m", range_: str = "1h", interval: str = "1m"
) -> str:
    """Replace Grafana's $__rate_interval, $__range and $__interval with fixed durations."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$__range", range_)
        .replace("$__interval", interval)
    )


def all_values(document: Mapping[str, Any]) -> dict[str, str]:
    """Name → what "All" sends, for each query variable of a rendered dashboard."""
    return {
        variable["name"]: variable.get("allValue") or ""
        for variable in document.get("templating", {}).get("list", [])
        if variable.get("type") == "query"
    }


def with_variables(expr: str, values: Mapping[str, str]) -> str:
    """Replace the dashboard variables ``$name`` and ``${name}`` with ``values``, as Grafana
    interpolates them (Grafana's own ``$__`` macros are left for ``with_grafana_macros``)."""
    for name, value in values.items():
        pattern = rf"\$(?:\{{{re.escape(name)}\}}|{re.escape(name)}\b)"
        expr = re.sub(pattern, value.replace("\\", "\\\\"), expr)
    return expr


_NAME = re.compile(r"(?<![\w:\"'])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "and", "or", "unless", "offset", "inf", "nan",
}  # fmt: skip


def metric_selectors(expr: str) -> list[tuple[str, list[str]]]:
    """(metric name, label names matched) of every vector selector in ``expr``.

    A lexical scan, good enough for the expressions here: it skips function calls (a name
    followed by "("), aggregation keywords, strings and durations.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values cannot look like names
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    text = _LABEL_LISTS.sub("", text)  # by (...), on (...), group_left (...): label names
    found = []
    for match in _NAME.finditer(text):
        name, matchers = match.group(1), match.group(2)
        rest = text[match.end() :].lstrip()
        if name.lower() in _KEYWORDS or rest.startswith("("):
            continue
        if re.fullmatch(r"\d+[smhdwy]", name):
            continue
        labels = re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers or "")
        found.append((name, labels))
    return found


_SET_OPS = ("or", ("and", "unless"))
_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_MODIFIERS = re.compile(
    r"^\s*(?:bool\s+)?(?:(?:on|ignoring)\s*\([^)]*\)\s*)?(?:(?:group_left|group_right)\s*(?:\([^)]*\))?\s*)?"
)


def _strip_parens(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for i, char in enumerate(expr):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0 and i < len(expr) - 1:
                return expr  # the first "(" closes before the end: not one group
        expr = expr[1:-1].strip()
    return expr


def _top_level(expr: str) -> list[tuple[int, int, str]]:
    """(start, end, operator) of binary set and comparison operators outside any bracket."""
    found = []
    depth, i, quote = 0, 0, ""
    while i < len(expr):
        char = expr[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            word = re.match(r"(or|and|unless)\b", expr[i:])
            if word and (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] in "_:")):
                found.append((i, i + len(word.group(1)), word.group(1)))
                i += len(word.group(1))
                continue
            for op in _COMPARISONS:
                if expr.startswith(op, i):
                    found.append((i, i + len(op), op))
                    i += len(op) - 1
                    break
        i += 1
    return found


def signals(expr: str) -> list[tuple[str, bool]]:
    """Split an alert expression into the operands whose data it decides on.

    Returns (operand, needs_data): both sides of ``or``, ``and`` and comparisons must return
    data (a comparison with a threshold is what makes the alert fire or not); the right side
    of ``unless`` is an exclusion and may be empty. Vector-matching modifiers are dropped.
    """
    expr = _strip_parens(expr)
    operators = _top_level(expr)
    for wanted in (*_SET_OPS, _COMPARISONS):
        group = wanted if isinstance(wanted, tuple) else (wanted,)
        splits = [op for op in operators if op[2] in group]
        if not splits:
            continue
        start, end, op = splits[0]
        left = expr[:start]
        right = _MODIFIERS.sub("", expr[end:], count=1)
        return signals(left) + ([(right.strip(), False)] if op == "unless" else signals(right))
    if re.fullmatch(r"[\d.\s*+\-/]+", expr):
        return []  # a constant such as 2 * 86400
    return [(expr, True)]


DEPLOYMENT_LABELS = {"cluster", "namespace"}
_AGGREGATIONS = (
    "sum|min|max|avg|count|group|stddev|stdvar|topk|bottomk|quantile|count_values|limitk"
)


def merges_deployments(expr: str) -> list[str]:
    """The aggregations and vector matchings of ``expr`` that drop cluster or namespace."""
    problems = []
    aggregation = rf"\b(?:{_AGGREGATIONS})\s*(?:(by|without)\s*\(([^)]*)\))?\s*\("
    for match in re.finditer(aggregation, expr):
        modifier, labels = match.groups()
        names = {n.strip() for n in (labels or "").split(",") if n.strip()}
        keeps = names >= DEPLOYMENT_LABELS if modifier == "by" else not names & DEPLOYMENT_LABELS
        if modifier is None or not keeps:
            problems.append(match.group(0).strip())
    for match in re.finditer(r"\bon\s*\(([^)]*)\)", expr):
        if not {n.strip() for n in match.group(1).split(",")} >= DEPLOYMENT_LABELS:
            problems.append(match.group(0))
    return problems
