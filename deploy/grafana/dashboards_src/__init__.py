"""Grafana dashboards for Flywheel, built in Python with grafana-foundation-sdk.

The JSON under deploy/grafana/dashboards/ is generated: edit the code here, then run
``python -m deploy.grafana.dashboards_src`` (``--check`` only reports stale files).
tests/observability/test_dashboards_sync.py keeps the two in sync.
"""

from deploy.grafana.dashboards_src.build import (
    DASHBOARDS,
    DASHBOARDS_DIR,
    PanelQuery,
    layout_problems,
    panel_queries,
    render,
    render_all,
    stale,
    write_all,
)

__all__ = [
    "DASHBOARDS",
    "DASHBOARDS_DIR",
    "PanelQuery",
    "layout_problems",
    "panel_queries",
    "render",
    "render_all",
    "stale",
    "write_all",
]
