"""The "Flywheel overview" dashboard: online quality, search, events, models and retraining.

Every query reads the raw ``flywheel_*`` series (services/metrics.py), so the dashboard works
against any Prometheus that scrapes the three services, with or without the recording rules.
Counts shown "in range" fall back to 0 (``or on () vector(0)``) because no decision in the
range is a true zero; nothing else is padded.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from deploy.grafana.dashboards_src.panels import (
    DATASOURCE,
    bars,
    graph,
    query,
    single,
    thresholds,
    timeline,
)

UID = "flywheel-overview"
TITLE = "Flywheel overview"

# Served lists of a version that is serving now, per arm (joins the ingest's online metrics
# with encoder_server's loaded-model info on version and arm).
_SERVING_NDCG = (
    'flywheel_online_ndcg_at_10{arm="%s"} and on (model_version, arm) flywheel_model_loaded_info'
)


def _serving(series: str, by: str = "model_version, arm") -> str:
    """``series`` per ``by`` labels, kept only for the versions and arms serving now."""
    return f"""
                    max by ({by}) ({series})
                      and on (model_version, arm)
                    max by (model_version, arm) (flywheel_model_loaded_info)
                    """


def _online_quality(board: dash.Dashboard) -> dash.Dashboard:
    return (
        board.with_row(dash.Row("Online quality: what shoppers do with the results"))
        .with_panel(
            graph(
                "Online nDCG@10 by model version and arm",
                "Mean online nDCG@10 (purchase 3, add to cart 2, click 1) of served lists whose "
                "attribution window has closed, recomputed by feedback_ingest; every version "
                "that ever served is shown.",
                query(
                    "max by (model_version, arm) (flywheel_online_ndcg_at_10)",
                    "{{model_version}} {{arm}}",
                ),
                unit="none",
                min_val=0,
                max_val=1,
                decimals=3,
            )
        )
        .with_panel(
            graph(
                "Canary vs production (versions serving now)",
                "Online nDCG@10 of the versions encoder_server serves now, by arm.",
                query(
                    _serving("flywheel_online_ndcg_at_10"),
                    "{{arm}} {{model_version}}",
                ),
                unit="none",
                min_val=0,
                max_val=1,
                decimals=3,
            )
        )
        .with_panel(
            graph(
                "Online nDCG@10 with 95% interval (versions serving now)",
                "Mean online nDCG@10 of the serving versions with the bounds of its 95% "
                "interval (mean ± 1.96 standard errors over closed lists): overlapping bands "
                "mean the arms cannot be told apart yet.",
                query(
                    _serving("flywheel_online_ndcg_at_10"),
                    "{{arm}} {{model_version}}",
                ),
                query(
                    _serving("flywheel_online_ndcg_at_10_interval", "model_version, arm, bound"),
                    "{{arm}} {{model_version}} {{bound}}",
                    ref_id="B",
                ),
                unit="none",
                min_val=0,
                max_val=1,
                decimals=3,
            )
        )
        .with_panel(
            single(
                "Canary − production online nDCG@10",
                "Online nDCG@10 of the serving canary minus that of the serving production "
                "version. Empty when no canary runs.",
                query(
                    f"""
                    max({_SERVING_NDCG % "canary"})
                    -
                    max({_SERVING_NDCG % "production"})
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
                "Canary controller: nDCG@10 difference at its last decision",
                "Canary minus production online nDCG@10 when the controller last decided, with "
                "the bounds it decided on (promote when the lower bound clears the margin, "
                "roll back when the upper bound is below 0).",
                query("max by (bound) (flywheel_canary_ndcg_difference)", "{{bound}}"),
                unit="none",
                decimals=4,
                span=9,
            )
        )
        .with_panel(
            graph(
                "Served lists counted in online metrics",
                "Lists per version and arm whose attribution window has closed: how much "
                "evidence the nDCG figures rest on.",
                query(
                    "max by (model_version, arm) (flywheel_online_lists)",
                    "{{model_version}} {{arm}}",
                ),
                span=9,
            )
        )
    )


def _search(board: dash.Dashboard) -> dash.Dashboard:
    latency = "flywheel_search_latency_seconds_bucket"
    return (
        board.with_row(dash.Row("Search"))
        .with_panel(
            graph(
                "Search latency by stage (p50, p99)",
                "GET /search: encode (query encoder), retrieve (engine) and total.",
                query(
                    f"histogram_quantile(0.50, sum by (stage, le) "
                    f"(rate({latency}[$__rate_interval])))",
                    "p50 {{stage}}",
                    "A",
                ),
                query(
                    f"histogram_quantile(0.99, sum by (stage, le) "
                    f"(rate({latency}[$__rate_interval])))",
                    "p99 {{stage}}",
                    "B",
                ),
                unit="s",
            )
        )
        .with_panel(
            graph(
                "Search latency p99 by mode",
                "Whole-request p99 per retrieval mode; the dashed line is the 30 ms alert "
                "threshold (FlywheelSearchLatencyHigh).",
                query(
                    f'histogram_quantile(0.99, sum by (mode, le) (rate({latency}{{stage="total"}}'
                    f"[$__rate_interval])))",
                    "{{mode}}",
                ),
                unit="s",
                limits=thresholds((None, "green"), (0.03, "red")),
            )
        )
        .with_panel(
            graph(
                "Search traffic by status",
                "Requests per second by HTTP status class.",
                query(
                    "sum by (status) (rate(flywheel_search_requests_total[$__rate_interval]))",
                    "{{status}}",
                ),
                unit="reqps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Search traffic by model version and arm",
                "Answered searches per second by the version and arm that served them.",
                query(
                    'sum by (model_version, arm) (rate(flywheel_search_requests_total{status="2xx"}'
                    "[$__rate_interval]))",
                    "{{model_version}} {{arm}}",
                ),
                unit="reqps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Search 5xx ratio",
                "Share of searches answered 5xx (0 while there are none); alert at 1% "
                "(FlywheelSearchErrors).",
                query(
                    """
                    (sum(rate(flywheel_search_requests_total{status="5xx"}[$__rate_interval]))
                      or vector(0))
                    /
                    sum(rate(flywheel_search_requests_total[$__rate_interval]))
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
                    """
                    sum(rate(flywheel_search_results_sum[$__rate_interval]))
                    /
                    sum(rate(flywheel_search_results_count[$__rate_interval]))
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
                    """
                    sum(rate(flywheel_search_results_bucket{le="0.0"}[$__rate_interval]))
                    /
                    sum(rate(flywheel_search_results_count[$__rate_interval]))
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
                query(
                    "sum by (action) (rate(flywheel_events_received_total[$__rate_interval]))",
                    "{{action}}",
                ),
                unit="cps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Events refused by reason",
                "Interactions POST /events refused (invalid, or the backlog was full).",
                query(
                    "sum by (reason) (rate(flywheel_events_refused_total[$__rate_interval]))",
                    "{{reason}}",
                ),
                unit="cps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Events produced to Kafka by type",
                "Served lists (query) and interactions acknowledged by Kafka; the backlog is "
                "what encoder_server still holds.",
                query(
                    "sum by (type) (rate(flywheel_events_produced_total[$__rate_interval]))",
                    "{{type}}",
                    "A",
                ),
                query("sum(flywheel_event_backlog)", "backlog (events)", "B"),
                span=8,
            )
        )
        .with_panel(
            graph(
                "Events ingested by action",
                "Valid events feedback_ingest stored per second (query = served list); "
                "re-deliveries it ignored are shown as duplicates.",
                query(
                    "sum by (action) (rate(flywheel_events_ingested_total[$__rate_interval]))",
                    "{{action}}",
                    "A",
                ),
                query(
                    "sum(rate(flywheel_events_duplicate_total[$__rate_interval]))",
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
                query(
                    "sum by (reason) (rate(flywheel_events_rejected_total[$__rate_interval]))",
                    "{{reason}}",
                ),
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
                    "max by (partition) (flywheel_consumer_lag_records)", "partition {{partition}}"
                ),
                span=8,
            )
        )
        .with_panel(
            graph(
                "Ingest commit time (p50, p99)",
                "Time to commit one poll batch (events, dead letters, offsets) to DuckDB.",
                query(
                    "histogram_quantile(0.50, sum by (le) "
                    "(rate(flywheel_ingest_commit_seconds_bucket[$__rate_interval])))",
                    "p50",
                    "A",
                ),
                query(
                    "histogram_quantile(0.99, sum by (le) "
                    "(rate(flywheel_ingest_commit_seconds_bucket[$__rate_interval])))",
                    "p99",
                    "B",
                ),
                unit="s",
            )
        )
        .with_panel(
            graph(
                "Records per ingest batch (p50, p99)",
                "Kafka records per poll batch.",
                query(
                    "histogram_quantile(0.50, sum by (le) "
                    "(rate(flywheel_ingest_batch_records_bucket[$__rate_interval])))",
                    "p50",
                    "A",
                ),
                query(
                    "histogram_quantile(0.99, sum by (le) "
                    "(rate(flywheel_ingest_batch_records_bucket[$__rate_interval])))",
                    "p99",
                    "B",
                ),
            )
        )
    )


def _models(board: dash.Dashboard) -> dash.Dashboard:
    return (
        board.with_row(dash.Row("Models, canary and retraining"))
        .with_panel(
            timeline(
                "Model timeline",
                "Which version encoder_server served as production and as canary, when "
                "(flywheel_model_loaded_info); swaps are also marked as annotations.",
                query(
                    "max by (model_version, arm) (flywheel_model_loaded_info)",
                    "{{arm}} {{model_version}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Model swaps by outcome",
                "Hot swaps of the serving models after a registry change.",
                query(
                    "sum by (outcome) (increase(flywheel_model_swaps_total[$__rate_interval]))",
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
                    "max by (model_version, dataset) (flywheel_offline_ndcg_at_10)",
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
                query(
                    "sum by (outcome) (increase(flywheel_gate_decisions_total[$__range]))"
                    " or on () vector(0)",
                    "{{outcome}}",
                ),
                decimals=0,
            )
        )
        .with_panel(
            single(
                "Canary decisions in range",
                "Canary controller decisions: promote, rollback, wait.",
                query(
                    "sum by (decision) (increase(flywheel_canary_decisions_total[$__range]))"
                    " or on () vector(0)",
                    "{{decision}}",
                ),
                decimals=0,
            )
        )
        .with_panel(
            single(
                "Retraining runs in range",
                "Runs by outcome: skipped, rejected, canary, production, failed.",
                query(
                    "sum by (outcome) (increase(flywheel_retrain_runs_total[$__range]))"
                    " or on () vector(0)",
                    "{{outcome}}",
                ),
                decimals=0,
            )
        )
        .with_panel(
            single(
                "Since the last successful retraining run",
                "Alert after 2 days (FlywheelRetrainStale).",
                query(
                    "time() - max(flywheel_retrain_last_success_timestamp_seconds > 0)",
                    "since last success",
                ),
                unit="s",
                limits=thresholds((None, "green"), (86400, "orange"), (172800, "red")),
                no_value="never",
            )
        )
        .with_panel(
            bars(
                "Retraining duration by stage",
                "Mean seconds per stage (data, mine, train, register, index, gate, total) "
                "since the retrainer started.",
                query(
                    """
                    sum by (stage) (flywheel_retrain_duration_seconds_sum)
                    /
                    sum by (stage) (flywheel_retrain_duration_seconds_count)
                    """,
                    "{{stage}}",
                ),
                unit="s",
                span=12,
            )
        )
        .with_panel(
            single(
                "Products indexed per loaded version",
                "Points in the index of each version encoder_server has open.",
                query("max by (model_version) (flywheel_index_points)", "{{model_version}}"),
                height=8,
            )
        )
        .with_panel(
            single(
                "Scrape targets up",
                "1 when Prometheus reached the service's /metrics on its last scrape.",
                query('min by (job) (up{job=~"flywheel-.*"})', "{{job}}"),
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
        .annotation(
            dash.AnnotationQuery()
            .name("Model swaps")
            .datasource(DATASOURCE)
            .enable(True)
            .icon_color("purple")
            .expr('sum(increase(flywheel_model_swaps_total{outcome="ok"}[1m])) > 0')
        )
    )
    for section in (_online_quality, _search, _events, _models):
        board = section(board)
    return board
