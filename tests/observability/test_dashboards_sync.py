"""The committed Grafana JSON is exactly what deploy/grafana/dashboards_src builds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from deploy.grafana.dashboards_src import DASHBOARDS_DIR, panel_queries, render_all, stale
from tests.observability.promql import (
    ROOT,
    all_values,
    dashboards,
    with_grafana_macros,
    with_variables,
)

REGENERATE = "python -m deploy.grafana.dashboards_src"


def test_committed_dashboards_equal_the_generated_ones() -> None:
    generated = render_all()
    committed = {path.name for path in DASHBOARDS_DIR.glob("*.json")}
    assert committed == set(generated), f"extra or missing dashboard files; run `{REGENERATE}`"
    for name, text in generated.items():
        on_disk = (DASHBOARDS_DIR / name).read_text(encoding="utf-8")
        assert on_disk == text, f"{name} is stale; run `{REGENERATE}` and commit the result"
    assert stale() == []


def test_check_mode_of_the_generator(tmp_path) -> None:
    command = [sys.executable, "-m", "deploy.grafana.dashboards_src"]
    fresh = subprocess.run(
        [*command, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "flywheel-overview.json" in fresh.stdout
    ok = subprocess.run([*command, "--check", "--out", str(tmp_path)], cwd=ROOT, check=False)
    assert ok.returncode == 0
    (tmp_path / "flywheel-overview.json").write_text("{}\n", encoding="utf-8")
    changed = subprocess.run(
        [*command, "--check", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, check=False
    )
    assert changed.returncode == 1
    assert b"stale" in changed.stderr


def test_overview_dashboard_shape() -> None:
    document = dashboards()["flywheel-overview.json"]
    assert document["title"] == "Flywheel overview"
    assert document["uid"] == "flywheel-overview"
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = {panel["title"] for panel in document["panels"]}
    for wanted in (
        "Online nDCG@10 by model version and arm",
        "Online nDCG@10 with 95% interval (versions serving now)",
        "CTR@10 with 95% interval (versions serving now)",
        "Add-to-cart rate with 95% interval (versions serving now)",
        "Purchase rate with 95% interval (versions serving now)",
        "Interleaved lists by outcome for the canary",
        "Interleaving win share of the canary",
        "Search latency by stage (p50, p99)",
        "Search traffic by status",
        "Events received by action",
        "Rejected events by reason (dead letters)",
        "Consumer lag by partition",
        "Gate decisions in range",
        "Canary decisions in range",
        "Model timeline",
        "Retraining duration by stage (mean in range)",
    ):
        assert wanted in titles
    for panel in document["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
    datasource, *_ = document["templating"]["list"]
    assert (datasource["name"], datasource["type"], datasource["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    json.dumps(document)  # plain JSON all the way down


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_every_dashboard_query_is_valid_promql(tmp_path) -> None:
    """promtool parses each query (variables set to All, Grafana macros replaced) as a
    recording rule."""
    rules = [
        {"record": f"dashboard:query_{n}:check", "expr": expr}
        for n, expr in enumerate(
            with_grafana_macros(with_variables(q.expr, all_values(document)))
            for document in dashboards().values()
            for q in panel_queries(document)
        )
    ]
    assert len(rules) > 30
    unresolved = [rule["expr"] for rule in rules if "$" in rule["expr"]]
    assert not unresolved, f"undefined dashboard variables in: {unresolved}"
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
    check = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
