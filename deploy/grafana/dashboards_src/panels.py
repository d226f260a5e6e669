"""Small helpers over grafana-foundation-sdk so a dashboard reads as a list of panels."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
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
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

# Panels use the dashboard's ${datasource} variable (any Prometheus data source); the
# provisioned one (deploy/grafana/provisioning/datasources/prometheus.yml) is the default.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

# The labels that tell one Flywheel deployment from another: Kubernetes scrapes add
# `namespace` (ServiceMonitor), a multi-cluster setup adds `cluster`; the compose stack has
# neither. Model versions (v1, v2, ...) are per registry, so every join and every aggregation
# keyed by model version keeps them: v3 in dev is not v3 in prod.
DEPLOYMENT_LABELS = ("cluster", "namespace")
DEPLOYMENT = ", ".join(DEPLOYMENT_LABELS)
# What "All" sends: `=~".*"` also matches series without the label (the compose stack).
ALL = ".*"
# Every selector on the dashboard carries this, so the variables scope every panel.
SCOPE = ", ".join(f'{label}=~"${label}"' for label in DEPLOYMENT_LABELS)
# The series the variables list their values from: Prometheus writes `up` for every target
# it scrapes, so a deployment whose processes are down is still listed.
_TARGETS = 'up{job=~"flywheel-.*"}'


def series(name: str, matchers: str = "") -> str:
    """The selector ``name{matchers}`` restricted to the cluster and namespace picked."""
    return f"{name}{{{SCOPE}{', ' + matchers if matchers else ''}}}"


def deployment_variables() -> list[dash.QueryVariable]:
    """``cluster`` then ``namespace``, each listing the values on the scrape targets (the
    namespaces of the cluster picked); "All" (the only choice where the label is absent)
    matches any value and none."""
    variables = []
    scope = ""
    for label in DEPLOYMENT_LABELS:
        selector = _TARGETS[:-1] + scope + "}"
        variables.append(
            dash.QueryVariable(label)
            .label(label.capitalize())
            .description(
                f"The {label} of the Flywheel deployment to show; All where the scrape "
                f"targets carry no {label} label."
            )
            .datasource(DATASOURCE)
            .query(f"label_values({selector}, {label})")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .include_all(True)
            .all_value(ALL)
            .current(VariableOption(selected=True, text="All", value="$__all"))
        )
        scope += f', {label}=~"${label}"'
    return variables


def query(
    expr: str, legend: str = "__auto", ref_id: str = "A", *, instant: bool = False
) -> prometheus.Dataquery:
    """A PromQL query (a range query unless ``instant``); ``expr`` may be indented (it is
    dedented and stripped)."""
    target = prometheus.Dataquery().expr(dedent(expr).strip()).legend_format(legend).ref_id(ref_id)
    return target.instant() if instant else target.range()


@dataclass(frozen=True, slots=True)
class Band:
    """An interval drawn as a shaded band between the series named ``"{name} lower"`` and
    ``"{name} upper"`` (their legends), in one colour with every series whose name starts
    with ``name`` (the estimate inside it)."""

    name: str
    color: str

    @property
    def lower(self) -> str:
        """Display name of the lower bound series."""
        return f"{self.name} lower"

    @property
    def upper(self) -> str:
        """Display name of the upper bound series."""
        return f"{self.name} upper"

    def apply(self, panel: timeseries.Panel) -> timeseries.Panel:
        """Add the overrides that draw the band: Grafana fills from the upper bound down to
        the series named in its ``fillBelowTo``; both bounds are drawn without a line."""
        color = DynamicConfigValue("color", {"mode": "fixed", "fixedColor": self.color})
        no_line = DynamicConfigValue("custom.lineWidth", 0)
        # Grafana matches this as a JavaScript regular expression against the display name.
        name = re.sub(r"[.*+?^${}()|[\]\\/]", r"\\\g<0>", self.name)
        return (
            panel.override_by_regexp(f"^{name}( |$)", [color])
            .override_by_name(
                self.lower, [color, no_line, DynamicConfigValue("custom.fillOpacity", 0)]
            )
            .override_by_name(
                self.upper,
                [
                    color,
                    no_line,
                    DynamicConfigValue("custom.fillOpacity", 20),
                    DynamicConfigValue("custom.fillBelowTo", self.lower),
                ],
            )
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
    bands: Sequence[Band] = (),
) -> timeseries.Panel:
    """A time series panel; ``limits`` are drawn as dashed lines, ``bands`` as shaded
    intervals (the targets must name their bound series as each band expects)."""
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
    for band in bands:
        panel = band.apply(panel)
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
