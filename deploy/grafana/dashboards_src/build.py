"""Render the dashboards to the JSON files Grafana provisions from deploy/grafana/dashboards/."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from deploy.grafana.dashboards_src.overview import overview

DASHBOARDS_DIR = Path(__file__).resolve().parents[1] / "dashboards"

GRID_COLUMNS = 24  # Grafana's dashboard grid is 24 columns wide

# File name (under deploy/grafana/dashboards/) → dashboard builder.
DASHBOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    "flywheel-overview.json": overview,
}


def render(board: dash.Dashboard) -> str:
    """Stable JSON for one dashboard: panels numbered in order, keys sorted, newline at end.

    Raises ValueError when a panel leaves the grid or covers another: the SDK places panels
    left to right without checking, and Grafana would silently move them.
    """
    model = board.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    text = json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False)
    problems = layout_problems(json.loads(text))
    if problems:
        raise ValueError(f"dashboard {model.title!r}: " + "; ".join(problems))
    return text + "\n"


def layout_problems(document: dict[str, Any]) -> list[str]:
    """Panels of a rendered dashboard that leave the 24-column grid or overlap another
    (top-level panels and rows; a collapsed row's panels are laid out when it opens)."""
    problems = []
    placed: list[tuple[str, int, int, int, int]] = []
    for panel in document.get("panels", []):
        title = str(panel.get("title", ""))
        grid = panel.get("gridPos") or {}
        x, y, w, h = (int(grid.get(key, 0)) for key in ("x", "y", "w", "h"))
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > GRID_COLUMNS:
            problems.append(f"{title!r} at x={x} w={w} y={y} h={h} is outside the grid")
        for other, ox, oy, ow, oh in placed:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                problems.append(f"{title!r} overlaps {other!r}")
        placed.append((title, x, y, w, h))
    return problems


def render_all() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def write_all(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path = DASHBOARDS_DIR) -> list[str]:
    """Names of dashboards whose file in ``directory`` is missing or differs from the code."""
    return [
        name
        for name, text in render_all().items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != text
    ]


@dataclass(frozen=True, slots=True)
class PanelQuery:
    """One PromQL expression of a dashboard, with where it comes from."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str


def panel_queries(document: dict[str, Any]) -> Iterator[PanelQuery]:
    """Every PromQL expression in a rendered dashboard: panel targets (rows included) and
    annotation queries, in order."""
    title = str(document.get("title", ""))
    for annotation in document.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            yield PanelQuery(title, f"annotation: {annotation['name']}", "", annotation["expr"])
    panels: list[dict[str, Any]] = list(document.get("panels", []))
    for panel in panels:
        panels.extend(panel.get("panels", []))  # panels of collapsed rows
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield PanelQuery(
                    title, str(panel.get("title", "")), str(target.get("refId", "")), target["expr"]
                )
