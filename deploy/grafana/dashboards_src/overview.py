"""The "Flywheel overview" dashboard: online quality, search, events, models and retraining.

Every query reads the raw ``flywheel_*`` series (services/metrics.py), so the dashboard works
against any Prometheus that scrapes the three services, with or without the recording rules.
Every selector is scoped by the ``cluster`` and ``namespace`` variables (``series``), and
every aggregation keyed by model version keeps those labels (``DEPLOYMENT``), so two
deployments' v3 never merge. Counts shown "in range" fall back to 0
(``or on () vector(0)``) because no decision in the range is a true zero; nothing else is
padded.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import timeseries

from deploy.grafana.dashboards_src.panels import (
    DATASOURCE,
    DEPLOYMENT,
    Band,
    bars,
    deployment_variables,
    graph,
    query,
    series,
    single,
    thresholds,
    timeline,
)

UID = "flywheel-overview"
TITLE = "Flywheel overview"

# Versions serve in two arms; each arm's interval is one band in one colour. Lists of the
# third arm, "interleaved", belong to no single version: the interleaving panels show them.
_ARM_BANDS = (Band("production", "green"), Band("canary", "orange"))


def _serving(metric: str, matchers: str = "") -> str:
    """``metric`` per model version and arm, kept only for the versions and arms serving
    now (joined with encoder_server's loaded-model info)."""
    return f"""
        max by ({DEPLOYMENT}, model_version, arm) ({series(metric, matchers)})
          and on ({DEPLOYMENT}, model_version, arm)
        max by ({DEPLOYMENT}, model_version, arm) ({series("flywheel_model_loaded_info")})
        """


def _per_version(metric: str, labels: str = "model_version, arm", matchers: str = "") -> str:
    """``metric`` per deployment and ``labels`` (max drops job and instance)."""
    return f"max by ({DEPLOYMENT}, {labels}) ({series(metric, matchers)})"


def _advantage(bound: str) -> str:
    """The canary controller's last measured advantage, or one of its bounds."""
    selector = series("flywheel_canary_ndcg_difference", f'bound="{bound}"')
    return f"max by ({DEPLOYMENT}) ({selector})"


def _interval(
    title: str, description: str, metric: str, *, unit: str, span: int
) -> timeseries.Panel:
    """``metric`` of the serving versions by arm, with its ``{metric}_interval`` (bounds
    ``lower`` and ``upper``) drawn as a band per arm."""
    return graph(
        title,
        # Bands pair their bounds by series name, which says the arm but not the namespace.
        f"{description} Pick one namespace: with several, one band per arm is drawn.",
        query(_serving(metric), "{{arm}} {{model_version}}"),
        query(_serving(f"{metric}_interval", 'bound="lower"'), "{{arm}} lower", "B"),
        query(_serving(f"{metric}_interval", 'bound="upper"'), "{{arm}} upper", "C"),
        unit=unit,
        min_val=0,
        max_val=1,
        decimals=3,
        span=span,
        bands=_ARM_BANDS,
    )


def _rate(metric: str, by: str, matchers: str = "") -> str:
    return f"sum by ({by}) (rate({series(metric, matchers)}[$__rate_interval]))"


def _quantile(q: float, histogram: str, by: str = "", matchers: str = "") -> str:
    labels = f"{by}, le" if by else "le"
    return (
        f"histogram_quantile({q:.2f}, sum by ({labels}) "
        f"(rate({series(histogram + '_bucket', matchers)}[$__rate_interval])))"
    )


def _in_range(metric: str, by: str) -> str:
    return f"sum by ({by}) (increase({series(metric)}[$__range])) or on () vector(0)"


def _online_quality(board: dash.Dashboard) -> dash.Dashboard:
    ndcg = "flywheel_online_ndcg_at_10"
    pair = "model_version, control_version"
    wins = _per_version("flywheel_interleaving_lists", pair, 'outcome="win"')
    losses = _per_version("flywheel_interleaving_lists", pair, 'outcome="loss"')
    return (
        board.with_row(dash.Row("Online quality: what shoppers do with the results"))
        .with_panel(
            graph(
                "Online nDCG@10 by model version and arm",
                "Mean online nDCG@10 (purchase 3, add to cart 2, click 1) of served lists whose "
                "attribution window has closed, recomputed by feedback_ingest; every version "
                "that ever served is shown.",
                query(_per_version(ndcg), "{{model_version}} {{arm}}"),
                unit="none",
                min_val=0,
                max_val=1,
                decimals=3,
            )
        )
        .with_panel(
            _interval(
                "Online nDCG@10 with 95% interval (versions serving now)",
                "Canary against production: mean online nDCG@10 of the serving versions by "
                "arm, the band its 95% interval (mean ± 1.96 standard errors over closed "
                "lists). Overlapping bands mean the arms cannot be told apart yet.",
                ndcg,
                unit="none",
                span=12,
            )
        )
        .with_panel(
            _interval(
                "CTR@10 with 95% interval (versions serving now)",
                "Share of closed served lists with an engagement in the top 10, by arm; the "
                "band is its 95% Wilson interval.",
                "flywheel_online_ctr_at_10",
                unit="percentunit",
                span=8,
            )
        )
        .with_panel(
            _interval(
                "Add-to-cart rate with 95% interval (versions serving now)",
                "Share of closed served lists with an add to cart or a purchase, by arm; the "
                "band is its 95% Wilson interval.",
                "flywheel_online_add_to_cart_ratio",
                unit="percentunit",
                span=8,
            )
        )
        .with_panel(
            _interval(
                "Purchase rate with 95% interval (versions serving now)",
                "Share of closed served lists with a purchase, by arm; the band is its 95% "
                "Wilson interval.",
                "flywheel_online_purchase_ratio",
                unit="percentunit",
                span=8,
            )
        )
        .with_panel(
            single(
                "Canary − production online nDCG@10",
                "Online nDCG@10 of the serving canary minus that of the serving production "
                "version. Empty when no canary runs (or it serves interleaved lists only).",
                query(
                    f"""
                    max by ({DEPLOYMENT}) ({_serving(ndcg, 'arm="canary"')})
                    -
                    max by ({DEPLOYMENT}) ({_serving(ndcg, 'arm="production"')})
                    """,
                    "canary − production",
                ),
                unit="none",
                decimals=4,
                no_value="no canary",
                height=8,
                limits=thresholds((None, "red"), (-0.02, "orange"), (0, "green")),
            )
        )
        .with_panel(
            graph(
                "Canary controller: advantage at its last decision",
                "The canary's measured advantage when the controller last decided (win share "
                "− ½ when judged by interleaving, online nDCG@10 difference when judged by "
                "A/B), the band the bounds it decided on: promote when the lower bound clears "
                "the margin, roll back when the upper bound is below 0.",
                query(_advantage("estimate"), "advantage"),
                query(_advantage("lower"), "advantage lower", "B"),
                query(_advantage("upper"), "advantage upper", "C"),
                unit="none",
                decimals=4,
                span=9,
                bands=(Band("advantage", "purple"),),
                limits=thresholds((None, "red"), (0, "green")),
            )
        )
        .with_panel(
            graph(
                "Served lists counted in online metrics",
                "Lists per version and arm whose attribution window has closed: how much "
                "evidence the online figures rest on.",
                query(_per_version("flywheel_online_lists"), "{{model_version}} {{arm}}"),
                span=9,
            )
        )
        .with_panel(
            graph(
                "Interleaved lists by outcome for the canary",
                "Team-draft interleaved lists (attribution window closed) of each canary "
                "version against its control: won, lost or tied by the canary, or without "
                "engagement (none).",
                query(
                    _per_version("flywheel_interleaving_lists", f"{pair}, outcome"),
                    "{{model_version}} vs {{control_version}} {{outcome}}",
                ),
                span=12,
            )
        )
        .with_panel(
            graph(
                "Interleaving win share of the canary",
                "Wins / (wins + losses) of each canary version against its control; above ½ "
                "(dashed) shoppers prefer the canary's results. The controller's interleaving "
                "judge decides on it.",
                query(
                    f"""
                    {wins}
                    /
                    ({wins} + {losses} > 0)
                    """,
                    "{{model_version}} vs {{control_version}}",
                ),
                unit="percentunit",
                min_val=0,
                max_val=1,
                decimals=3,
                span=12,
                limits=thresholds((None, "red"), (0.5, "green")),
            )
        )
    )


def _search(board: dash.Dashboard) -> dash.Dashboard:
    latency = "flywheel_search_latency_seconds"
    requests = "flywheel_search_requests_total"
    results = "flywheel_search_results"
    return (
        board.with_row(dash.Row("Search"))
        .with_panel(
            graph(
                "Search latency by stage (p50, p99)",
                "GET /search: encode (query encoder), retrieve (engine) and total.",
                query(_quantile(0.50, latency, "stage"), "p50 {{stage}}", "A"),
                query(_quantile(0.99, latency, "stage"), "p99 {{stage}}", "B"),
                unit="s",
            )
        )
        .with_panel(
            graph(
                "Search latency p99 by mode",
                "Whole-request p99 per retrieval mode; the dashed line is the 30 ms alert "
                "threshold (FlywheelSearchLatencyHigh).",
                query(_quantile(0.99, latency, "mode", 'stage="total"'), "{{mode}}"),
                unit="s",
                limits=thresholds((None, "green"), (0.03, "red")),
            )
        )
        .with_panel(
            graph(
                "Search traffic by status",
                "Requests per second by HTTP status class.",
                query(_rate(requests, "status"), "{{status}}"),
                unit="reqps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Search traffic by model version and arm",
                "Answered searches per second by the version and arm that served them.",
                query(
                    _rate(requests, f"{DEPLOYMENT}, model_version, arm", 'status="2xx"'),
                    "{{model_version}} {{arm}}",
                ),
                unit="reqps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Search 5xx ratio",
                "Share of searches answered 5xx (0 while there are none); the availability "
                "SLO is 99.9% (FlywheelSearchAvailabilityBurnRate, docs/runbooks.md).",
                query(
                    f"""
                    ({_rate(requests, DEPLOYMENT, 'status="5xx"')}
                      or {_rate(requests, DEPLOYMENT)} * 0)
                    /
                    {_rate(requests, DEPLOYMENT)}
                    """,
                    "5xx",
                ),
                unit="percentunit",
                span=8,
                limits=thresholds((None, "green"), (0.01, "red")),
            )
        )
        .with_panel(
            graph(
                "Results per search",
                "Mean number of results returned per search.",
                query(
                    f"""
                    sum(rate({series(results + "_sum")}[$__rate_interval]))
                    /
                    sum(rate({series(results + "_count")}[$__rate_interval]))
                    """,
                    "mean",
                ),
            )
        )
        .with_panel(
            graph(
                "Searches with no results",
                "Share of searches that returned nothing.",
                query(
                    f"""
                    sum(rate({series(results + "_bucket", 'le="0.0"')}[$__rate_interval]))
                    /
                    sum(rate({series(results + "_count")}[$__rate_interval]))
                    """,
                    "no results",
                ),
                unit="percentunit",
            )
        )
    )


def _events(board: dash.Dashboard) -> dash.Dashboard:
    return (
        board.with_row(dash.Row("Shopper events: POST /events → Kafka → DuckDB"))
        .with_panel(
            graph(
                "Events received by action",
                "Interactions POST /events took, per second.",
                query(_rate("flywheel_events_received_total", "action"), "{{action}}"),
                unit="cps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Events refused by reason",
                "Interactions POST /events refused (invalid, or the backlog was full).",
                query(_rate("flywheel_events_refused_total", "reason"), "{{reason}}"),
                unit="cps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Events produced to Kafka by type",
                "Served lists (query) and interactions acknowledged by Kafka; the backlog is "
                "what encoder_server still holds.",
                query(_rate("flywheel_events_produced_total", "type"), "{{type}}", "A"),
                query(f"sum({series('flywheel_event_backlog')})", "backlog (events)", "B"),
                span=8,
            )
        )
        .with_panel(
            graph(
                "Events ingested by action",
                "Valid events feedback_ingest stored per second (query = served list); "
                "re-deliveries it ignored are shown as duplicates.",
                query(_rate("flywheel_events_ingested_total", "action"), "{{action}}", "A"),
                query(
                    f"sum(rate({series('flywheel_events_duplicate_total')}[$__rate_interval]))",
                    "duplicates",
                    "B",
                ),
                unit="cps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Rejected events by reason (dead letters)",
                "Kafka records feedback_ingest sent to the dead-letter table and topic.",
                query(_rate("flywheel_events_rejected_total", "reason"), "{{reason}}"),
                unit="cps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Consumer lag by partition",
                "Records on the events topic not yet in DuckDB; alert above 10k for 10 minutes "
                "(FlywheelConsumerLag).",
                query(
                    _per_version("flywheel_consumer_lag_records", "partition"),
                    "partition {{partition}}",
                ),
                span=8,
            )
        )
        .with_panel(
            graph(
                "Ingest commit time (p50, p99)",
                "Time to commit one poll batch (events, dead letters, offsets) to DuckDB.",
                query(_quantile(0.50, "flywheel_ingest_commit_seconds"), "p50", "A"),
                query(_quantile(0.99, "flywheel_ingest_commit_seconds"), "p99", "B"),
                unit="s",
            )
        )
        .with_panel(
            graph(
                "Records per ingest batch (p50, p99)",
                "Kafka records per poll batch.",
                query(_quantile(0.50, "flywheel_ingest_batch_records"), "p50", "A"),
                query(_quantile(0.99, "flywheel_ingest_batch_records"), "p99", "B"),
            )
        )
    )


def _models(board: dash.Dashboard) -> dash.Dashboard:
    duration = "flywheel_retrain_duration_seconds"
    targets = series("up", 'job=~"flywheel-.*"')
    return (
        board.with_row(dash.Row("Models, canary and retraining"))
        .with_panel(
            timeline(
                "Model timeline",
                "Which version encoder_server served as production and as canary, when "
                "(flywheel_model_loaded_info); swaps are also marked as annotations.",
                query(_per_version("flywheel_model_loaded_info"), "{{arm}} {{model_version}}"),
            )
        )
        .with_panel(
            graph(
                "Model swaps by outcome",
                "Hot swaps of the serving models after a registry change.",
                query(
                    f"sum by (outcome) "
                    f"(increase({series('flywheel_model_swaps_total')}[$__rate_interval]))",
                    "{{outcome}}",
                ),
                draw_bars=True,
            )
        )
        .with_panel(
            graph(
                "Offline nDCG@10 by model version",
                "Held-out and guard-set nDCG@10 the gate measured for each version.",
                query(
                    _per_version("flywheel_offline_ndcg_at_10", "model_version, dataset"),
                    "{{model_version}} {{dataset}}",
                ),
                unit="none",
                decimals=3,
            )
        )
        .with_panel(
            single(
                "Gate decisions in range",
                "Held-out gate decisions on retrained candidates.",
                query(_in_range("flywheel_gate_decisions_total", "outcome"), "{{outcome}}"),
                decimals=0,
            )
        )
        .with_panel(
            single(
                "Canary decisions in range",
                "Canary controller decisions: promote, rollback, wait.",
                query(_in_range("flywheel_canary_decisions_total", "decision"), "{{decision}}"),
                decimals=0,
            )
        )
        .with_panel(
            single(
                "Retraining runs in range",
                "Runs by outcome: skipped, rejected, canary, production, failed.",
                query(_in_range("flywheel_retrain_runs_total", "outcome"), "{{outcome}}"),
                decimals=0,
            )
        )
        .with_panel(
            single(
                "Since the last successful retraining run",
                "Alert after 2 days (FlywheelRetrainStale).",
                query(
                    "time() - "
                    f"max({series('flywheel_retrain_last_success_timestamp_seconds')} > 0)",
                    "since last success",
                ),
                unit="s",
                limits=thresholds((None, "green"), (86400, "orange"), (172800, "red")),
                no_value="never",
            )
        )
        .with_panel(
            bars(
                "Retraining duration by stage (mean in range)",
                "Mean seconds per stage (data, mine, train, register, index, gate, total) of "
                "the runs that ended in the dashboard's time range; empty when none did.",
                query(
                    f"""
                    sum by (stage) (increase({series(duration + "_sum")}[$__range]))
                    /
                    (sum by (stage) (increase({series(duration + "_count")}[$__range])) > 0)
                    """,
                    "{{stage}}",
                    instant=True,
                ),
                unit="s",
                span=12,
            )
        )
        .with_panel(
            single(
                "Products indexed per loaded version",
                "Points in the index of each version encoder_server has open.",
                query(_per_version("flywheel_index_points", "model_version"), "{{model_version}}"),
                height=8,
            )
        )
        .with_panel(
            single(
                "Scrape targets up",
                "1 when Prometheus reached the service's /metrics on its last scrape.",
                query(f"min by (job) ({targets})", "{{job}}"),
                limits=thresholds((None, "red"), (1, "green")),
                height=8,
            )
        )
    )


def overview() -> dash.Dashboard:
    """The dashboard builder (render it with ``deploy.grafana.dashboards_src.render``)."""
    board = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .description(
            "Flywheel: SPLADE product search that learns from shoppers. Built by "
            "deploy/grafana/dashboards_src (python -m deploy.grafana.dashboards_src); edit "
            "the code, not the JSON."
        )
        .tags(["flywheel"])
        .editable()
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for variable in deployment_variables():
        board = board.with_variable(variable)
    swaps = series("flywheel_model_swaps_total", 'outcome="ok"')
    board = board.annotation(
        dash.AnnotationQuery()
        .name("Model swaps")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("purple")
        .expr(f"sum(increase({swaps}[1m])) > 0")
    )
    for section in (_online_quality, _search, _events, _models):
        board = section(board)
    return board
