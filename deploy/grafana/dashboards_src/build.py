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

# File name (under deploy/grafana/dashboards/) → dashboard builder.
DASHBOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    "flywheel-overview.json": overview,
}


def render(board: dash.Dashboard) -> str:
    """Stable JSON for one dashboard: panels numbered in order, keys sorted, newline at end."""
    model = board.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


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
