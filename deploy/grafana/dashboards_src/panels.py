"""Small helpers over grafana-foundation-sdk so a dashboard reads as a list of panels."""

from __future__ import annotations

from textwrap import dedent

from grafana_foundation_sdk.builders import (
    bargauge,
    prometheus,
    stat,
    statetimeline,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef, Threshold, ThresholdsMode

# Panels use the dashboard's ${datasource} variable (any Prometheus data source); the
# provisioned one (deploy/grafana/provisioning/datasources/prometheus.yml) is the default.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


def query(expr: str, legend: str = "__auto", ref_id: str = "A") -> prometheus.Dataquery:
    """A PromQL range query; ``expr`` may be indented (it is dedented and stripped)."""
    return (
        prometheus.Dataquery()
        .expr(dedent(expr).strip())
        .legend_format(legend)
        .ref_id(ref_id)
        .range()
    )


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (the base colour)."""
    return (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def _legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def _last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def graph(
    title: str,
    description: str,
    *targets: prometheus.Dataquery,
    unit: str = "short",
    span: int = 12,
    height: int = 8,
    min_val: float | None = None,
    max_val: float | None = None,
    draw_bars: bool = False,
    decimals: int | None = None,
    limits: dash.ThresholdsConfig | None = None,
) -> timeseries.Panel:
    """A time series panel; ``limits`` are drawn as dashed lines."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .span(span)
        .height(height)
        .legend(_legend())
    )
    if min_val is not None:
        panel = panel.min(min_val)
    if max_val is not None:
        panel = panel.max(max_val)
    if decimals is not None:
        panel = panel.decimals(decimals)
    if draw_bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    if limits is not None:
        panel = panel.thresholds(limits).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
            )
        )
    return panel


def single(
    title: str,
    description: str,
    *targets: prometheus.Dataquery,
    unit: str = "short",
    span: int = 6,
    height: int = 5,
    decimals: int | None = None,
    limits: dash.ThresholdsConfig | None = None,
    no_value: str | None = None,
) -> stat.Panel:
    """A stat panel with the last value of each series."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .span(span)
        .height(height)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(_last_value())
        .thresholds(limits or thresholds((None, "green")))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def bars(
    title: str,
    description: str,
    *targets: prometheus.Dataquery,
    unit: str = "short",
    span: int = 8,
    height: int = 8,
) -> bargauge.Panel:
    """A horizontal bar gauge with the last value of each series."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .span(span)
        .height(height)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .reduce_options(_last_value())
        .thresholds(thresholds((None, "blue")))
    )


def timeline(
    title: str, description: str, *targets: prometheus.Dataquery, span: int = 24, height: int = 6
) -> statetimeline.Panel:
    """A state timeline: which series had a value when."""
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .span(span)
        .height(height)
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .thresholds(thresholds((None, "green")))
    )
