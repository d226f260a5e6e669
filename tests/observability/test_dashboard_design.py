"""How the committed dashboards are built: on the grid, scoped to one deployment by the
``cluster`` and ``namespace`` variables, intervals drawn as bands, histograms over a range."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from deploy.grafana.dashboards_src import layout_problems, panel_queries, render
from deploy.grafana.dashboards_src.overview import overview
from deploy.grafana.dashboards_src.panels import graph, query
from tests.observability.promql import DEPLOYMENT_LABELS, dashboards, metric_selectors

# Arms a version serves in (flywheel_model_loaded_info); one band each on interval panels.
SERVING_ARMS = ("production", "canary")

BOARDS = sorted(dashboards().items())


def board_ids() -> list[str]:
    return [name for name, _ in BOARDS]


def panels(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, collapsed rows' panels included."""
    for panel in document["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


@pytest.mark.parametrize(("name", "document"), BOARDS, ids=board_ids())
def test_panels_stay_on_the_24_column_grid_without_overlapping(
    name: str, document: dict[str, Any]
) -> None:
    placed: list[tuple[str, int, int, int, int]] = []
    for panel in document["panels"]:
        grid = panel["gridPos"]
        x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
        assert x >= 0 and w > 0 and x + w <= 24, f"{panel['title']!r} leaves the grid: {grid}"
        for other, ox, oy, ow, oh in placed:
            overlap = x < ox + ow and ox < x + w and y < oy + oh and oy < y + h
            assert not overlap, f"{panel['title']!r} overlaps {other!r}"
        placed.append((panel["title"], x, y, w, h))
    assert layout_problems(document) == []


def test_layout_problems_finds_overflow_and_overlap() -> None:
    def at(title: str, x: int, y: int, w: int, h: int = 8) -> dict[str, Any]:
        return {"title": title, "gridPos": {"x": x, "y": y, "w": w, "h": h}}

    fine = {"panels": [at("a", 0, 0, 12), at("b", 12, 0, 12), at("c", 0, 8, 24)]}
    assert layout_problems(fine) == []
    wide = {"panels": [at("a", 0, 0, 18), at("b", 18, 0, 9)]}
    assert layout_problems(wide) == ["'b' at x=18 w=9 y=0 h=8 is outside the grid"]
    stacked = {"panels": [at("a", 0, 0, 12), at("b", 6, 4, 12)]}
    assert layout_problems(stacked) == ["'b' overlaps 'a'"]


def test_render_refuses_a_panel_off_the_grid() -> None:
    board = (
        overview()
        .with_panel(graph("too wide", "", query("up"), span=18))
        .with_panel(graph("overflows", "", query("up"), span=9))
    )
    with pytest.raises(ValueError, match=r"'overflows' .* outside the grid"):
        render(board)


@pytest.mark.parametrize(("name", "document"), BOARDS, ids=board_ids())
def test_cluster_and_namespace_variables(name: str, document: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for label in sorted(DEPLOYMENT_LABELS):
        variable = variables[label]
        assert variable["type"] == "query"
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        # All must also match series without the label (the compose stack has neither).
        assert (variable["includeAll"], variable["allValue"]) == (True, ".*")
        assert variable["current"]["value"] == "$__all"
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
        assert match and match.group(2) == label, variable["query"]
        ((metric, _),) = metric_selectors(match.group(1))
        assert metric == "up" and 'job=~"flywheel-.*"' in match.group(1)
    # The namespaces offered are those of the cluster picked.
    assert 'cluster=~"$cluster"' in variables["namespace"]["query"]


def _queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f"{q.panel} / {q.ref_id}", q.expr) for q in panel_queries(document)]


@pytest.mark.parametrize(("name", "document"), BOARDS, ids=board_ids())
def test_every_query_is_scoped_to_the_deployment_picked(
    name: str, document: dict[str, Any]
) -> None:
    problems = []
    for where, expr in _queries(document):
        for metric, labels in metric_selectors(expr):
            missing = set(DEPLOYMENT_LABELS) - set(labels)
            if missing:
                problems.append(f"{where}: {metric} has no matcher on {sorted(missing)}")
        for label, op, value in re.findall(
            r"\b(cluster|namespace)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"", expr
        ):
            if (op, value) != ("=~", f"${label}"):
                problems.append(f'{where}: {label}{op}{value!r} instead of =~"${label}"')
        # Model versions are per registry: whatever is keyed by version keeps the deployment.
        for clause in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
            names = {n.strip() for n in clause.split(",")}
            if "model_version" in names and not set(DEPLOYMENT_LABELS) <= names:
                problems.append(f"{where}: ({clause}) merges deployments")
    assert not problems, "\n".join(problems)


def _legend_names(template: str) -> list[str]:
    """The series names a legend template gives on an interval panel."""
    if "{{arm}}" in template:
        return [template.replace("{{arm}}", arm) for arm in SERVING_ARMS]
    assert "{{" not in template, f"a bound's legend must name the band it belongs to: {template}"
    return [template]


def _reads_a_bound(expr: str) -> str | None:
    """ "lower" or "upper" when ``expr`` reads one bound of an interval."""
    found: set[str] = set(re.findall(r'\bbound\s*=\s*"(lower|upper)"', expr))
    if any(metric.endswith("_interval") for metric, _ in metric_selectors(expr)) or found:
        assert len(found) == 1, f"one bound per query, so each is its own series: {expr}"
        return found.pop()
    return None


@pytest.mark.parametrize(("name", "document"), BOARDS, ids=board_ids())
def test_every_interval_is_a_shaded_band(name: str, document: dict[str, Any]) -> None:
    bands = 0
    for panel in panels(document):
        bounds: dict[str, list[str]] = {"lower": [], "upper": []}
        for target in panel.get("targets", []):
            bound = _reads_a_bound(target["expr"])
            if bound:
                bounds[bound] += _legend_names(target["legendFormat"])
        if not bounds["upper"] and not bounds["lower"]:
            continue
        assert panel["type"] == "timeseries", panel["title"]
        overrides = {
            o["matcher"]["options"]: {p["id"]: p.get("value") for p in o["properties"]}
            for o in panel["fieldConfig"]["overrides"]
            if o["matcher"]["id"] == "byName"
        }
        assert len(bounds["upper"]) == len(bounds["lower"]), panel["title"]
        for upper, lower in zip(bounds["upper"], bounds["lower"], strict=True):
            assert upper.removesuffix(" upper") == lower.removesuffix(" lower"), panel["title"]
            fill = overrides.get(upper, {})
            assert fill.get("custom.fillBelowTo") == lower, f"{panel['title']}: {upper} unfilled"
            assert fill.get("custom.fillOpacity", 0) > 0, f"{panel['title']}: {upper}"
            # The band is the fill; bound lines on top of it would read as two more series.
            assert fill.get("custom.lineWidth") == 0, f"{panel['title']}: {upper}"
            assert overrides.get(lower, {}).get("custom.lineWidth") == 0, panel["title"]
            assert overrides[upper]["color"] == overrides[lower]["color"], panel["title"]
            bands += 1
    assert bands >= 2 * 4 + 1  # nDCG, CTR, add to cart, purchase per arm; the canary advantage


@pytest.mark.parametrize(("name", "document"), BOARDS, ids=board_ids())
def test_histogram_sums_and_counts_are_read_over_a_range(
    name: str, document: dict[str, Any]
) -> None:
    """A histogram's _sum / _count is a lifetime total; divided as is, it gives the mean
    since the process started, which says nothing about now."""
    problems = []
    for where, expr in _queries(document):
        text = re.sub(r"\{[^}]*\}", "", expr)
        for match in re.finditer(r"\b(flywheel_\w+_(?:sum|count))\b", text):
            if not text[match.end() :].lstrip().startswith("["):
                problems.append(f"{where}: {match.group(1)} outside a range selector")
    assert not problems, "\n".join(problems)


def test_retrain_duration_is_the_mean_over_the_dashboard_range() -> None:
    document = dashboards()["flywheel-overview.json"]
    (panel,) = (p for p in panels(document) if p["title"].startswith("Retraining duration"))
    (target,) = panel["targets"]
    assert "flywheel_retrain_duration_seconds_sum" in target["expr"]
    assert target["expr"].count("[$__range]") == 2
