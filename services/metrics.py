"""Every Prometheus metric Flywheel exports, declared once, with its buckets.

Names follow Prometheus conventions: the ``flywheel_`` prefix, base units in the name
(``_seconds``), ``_total`` on counters, and label values from small closed sets (model
versions are bounded by the registry's garbage collection).

Each process exports only its own series. Metrics are declared here unregistered
(``registry=None``), grouped by the process that owns them, i.e. the one whose ``/metrics``
(or Pushgateway push) carries them, one per Prometheus job in
deploy/prometheus/prometheus.yml:

``search``
    encoder_server (``flywheel serve``, job ``flywheel-search``), including the Kafka event
    sink it runs (services/kafka/producer.py).
``ingest``
    feedback_ingest (``flywheel ingest``, job ``flywheel-ingest``), including the online
    metrics and interleaving outcomes it computes from DuckDB.
``retrainer``
    ``flywheel retrain`` (job ``flywheel-retrainer``, and its Pushgateway push): runs, stages,
    gate decisions and the offline nDCG the gate (services/evaluation) measures.
``canary``
    ``flywheel canary watch`` (job ``flywheel-canary``): the canary controller in
    retrainer/canary.py and its watch loop.

:func:`registry_for` returns the app's own :class:`~prometheus_client.CollectorRegistry`:
that app's metrics, :data:`BUILD_INFO`, and the process, platform and GC collectors. Code
may still update a metric of another app (``flywheel eval`` sets the offline nDCG, a test
drives the controller); the value is simply not exported by a process that does not own it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Final, Literal, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)
from prometheus_client.metrics import MetricWrapperBase

from services.events import REJECT_REASONS

App = Literal["search", "ingest", "retrainer", "canary"]
"""A Flywheel process that exports metrics (one Prometheus job each)."""
APPS: Final[tuple[App, ...]] = get_args(App)

PACKAGE = "flywheel-search"
"""The distribution name in pyproject.toml, whose version :data:`BUILD_INFO` reports."""

# Sub-millisecond encode/retrieve stages up to multi-second outliers.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.004,
    0.006,
    0.008,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

# --- Every process -------------------------------------------------------------------------

BUILD_INFO = Info(
    "flywheel_build",
    "Flywheel package version, Python version and the production model version this process "
    "serves (empty where it serves none).",
    registry=None,
)

# --- search: encoder_server ----------------------------------------------------------------

SEARCH_LATENCY = Histogram(
    "flywheel_search_latency_seconds",
    "Time spent serving GET /search, by stage (encode, retrieve, total).",
    ["stage", "mode"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
SEARCH_REQUESTS = Counter(
    "flywheel_search_requests_total",
    "Search requests by HTTP status class, model version and arm.",
    ["status", "model_version", "arm"],
    registry=None,
)
SEARCH_RESULTS = Histogram(
    "flywheel_search_results",
    "Number of results returned per search.",
    buckets=(0, 1, 5, 10, 20, 50, 100),
    registry=None,
)
MODEL_INFO = Gauge(
    "flywheel_model_loaded_info",
    "1 for each model version loaded by this encoder_server, by arm.",
    ["model_version", "arm"],
    registry=None,
)
MODEL_LOADS = Counter(
    "flywheel_model_loads_total",
    "Model versions loaded (or failed to load).",
    ["outcome"],
    registry=None,
)
MODEL_SWAPS = Counter(
    "flywheel_model_swaps_total",
    "Hot swaps of the serving models after a registry change, by outcome (ok, failed).",
    ["outcome"],
    registry=None,
)
MODEL_RELEASES = Counter(
    "flywheel_model_releases_total",
    "Model versions closed after a swap, once no in-flight request could still use them.",
    registry=None,
)
INDEX_POINTS = Gauge(
    "flywheel_index_points",
    "Products in the index of a loaded model version.",
    ["model_version"],
    registry=None,
)
EVENT_SINK_ERRORS = Counter(
    "flywheel_event_sink_errors_total",
    "Events the sink failed to deliver or dropped.",
    ["reason"],
    registry=None,
)
EVENTS_RECEIVED = Counter(
    "flywheel_events_received_total",
    "Interactions taken by POST /events, by action.",
    ["action"],
    registry=None,
)
EVENTS_REFUSED = Counter(
    "flywheel_events_refused_total",
    "Interactions POST /events refused, by reason.",
    ["reason"],
    registry=None,
)
EVENTS_LATENCY = Histogram(
    "flywheel_events_request_seconds",
    "Time POST /events took for the requests it answered 2xx: validation, the spool's fsync "
    "and the wait for Kafka's acknowledgement (at most server.events_ack_timeout_s).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)
EVENTS_PRODUCED = Counter(
    "flywheel_events_produced_total",
    "Events acknowledged by Kafka, by type.",
    ["type"],
    registry=None,
)
EVENT_BACKLOG = Gauge(
    "flywheel_event_backlog",
    "Events queued in encoder_server, not yet acknowledged by Kafka.",
    registry=None,
)
EVENT_SPOOL_BYTES = Gauge(
    "flywheel_event_spool_bytes",
    "Bytes of events in encoder_server's durable spool, not yet acknowledged by Kafka.",
    registry=None,
)
EVENTS_REPLAYED = Counter(
    "flywheel_events_replayed_total",
    "Events found in the spool at start (not acknowledged before a stop or crash) and re-sent.",
    registry=None,
)

# --- ingest: feedback_ingest ---------------------------------------------------------------

EVENTS_INGESTED = Counter(
    "flywheel_events_ingested_total",
    "Valid events read by feedback_ingest, by action (query = served list); re-deliveries "
    "are included and also counted in flywheel_events_duplicate_total.",
    ["action"],
    registry=None,
)
EVENTS_REJECTED = Counter(
    "flywheel_events_rejected_total",
    "Kafka records feedback_ingest sent to the dead-letter store, by reason.",
    ["reason"],
    registry=None,
)
EVENTS_DUPLICATE = Counter(
    "flywheel_events_duplicate_total",
    "Re-delivered events feedback_ingest ignored (their event_id was already stored).",
    registry=None,
)
CONSUMER_LAG = Gauge(
    "flywheel_consumer_lag_records",
    "Records not yet ingested, per partition.",
    ["partition"],
    registry=None,
)
INGEST_BATCH_SIZE = Histogram(
    "flywheel_ingest_batch_records",
    "Records per ingested poll batch.",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500),
    registry=None,
)
INGEST_COMMIT_SECONDS = Histogram(
    "flywheel_ingest_commit_seconds",
    "Time to commit one batch (events, dead letters, offsets) to DuckDB.",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
INGEST_STORE_FAILURES = Counter(
    "flywheel_ingest_store_failures_total",
    "Poll batches the DuckDB store refused (disk full, invalidated database); the ingest "
    "retries with backoff, then exits non-zero.",
    registry=None,
)
INGEST_LAST_COMMIT = Gauge(
    "flywheel_ingest_last_commit_timestamp_seconds",
    "Unix time of the last poll batch feedback_ingest committed to DuckDB.",
    registry=None,
)
INGEST_PARTITIONS = Gauge(
    "flywheel_ingest_partitions",
    "Partitions of the events topic the ingest reads.",
    registry=None,
)
OFFSET_GAPS = Counter(
    "flywheel_ingest_offset_gaps_total",
    "Stored offsets found outside their partition's log, by kind (behind_log_start, "
    "past_log_end, topic_recreated); each is also a row of the offset_gaps table.",
    ["kind"],
    registry=None,
)
RECORDS_LOST = Counter(
    "flywheel_ingest_records_lost_total",
    "Records the ingest knows it can never read (gone before it read them); a lower bound.",
    registry=None,
)
DEAD_LETTER_PUBLISH_ERRORS = Counter(
    "flywheel_ingest_dead_letter_publish_errors_total",
    "Dead letters not confirmed on the dead-letter topic (they are in the DuckDB table).",
    registry=None,
)
ONLINE_NDCG = Gauge(
    "flywheel_online_ndcg_at_10",
    "Mean online nDCG@10 of served lists whose attribution window has closed.",
    ["model_version", "arm"],
    registry=None,
)
ONLINE_LISTS = Gauge(
    "flywheel_online_lists",
    "Served lists counted in the online metrics.",
    ["model_version", "arm"],
    registry=None,
)
ONLINE_NDCG_INTERVAL = Gauge(
    "flywheel_online_ndcg_at_10_interval",
    "95% interval of flywheel_online_ndcg_at_10 (mean +- 1.96 standard errors), by bound "
    "(lower, upper); absent below two lists.",
    ["model_version", "arm", "bound"],
    registry=None,
)
ONLINE_CTR = Gauge(
    "flywheel_online_ctr_at_10",
    "Share of served lists (attribution window closed) with an engagement in the top 10.",
    ["model_version", "arm"],
    registry=None,
)
ONLINE_CTR_INTERVAL = Gauge(
    "flywheel_online_ctr_at_10_interval",
    "95% Wilson interval of flywheel_online_ctr_at_10, by bound (lower, upper).",
    ["model_version", "arm", "bound"],
    registry=None,
)
ONLINE_ADD_TO_CART = Gauge(
    "flywheel_online_add_to_cart_ratio",
    "Share of served lists (attribution window closed) with an add-to-cart or purchase.",
    ["model_version", "arm"],
    registry=None,
)
ONLINE_ADD_TO_CART_INTERVAL = Gauge(
    "flywheel_online_add_to_cart_ratio_interval",
    "95% Wilson interval of flywheel_online_add_to_cart_ratio, by bound (lower, upper).",
    ["model_version", "arm", "bound"],
    registry=None,
)
ONLINE_PURCHASE = Gauge(
    "flywheel_online_purchase_ratio",
    "Share of served lists (attribution window closed) with a purchase.",
    ["model_version", "arm"],
    registry=None,
)
ONLINE_PURCHASE_INTERVAL = Gauge(
    "flywheel_online_purchase_ratio_interval",
    "95% Wilson interval of flywheel_online_purchase_ratio, by bound (lower, upper).",
    ["model_version", "arm", "bound"],
    registry=None,
)
INTERLEAVING_LISTS = Gauge(
    "flywheel_interleaving_lists",
    "Team-draft interleaved lists (attribution window closed) of a canary model_version "
    "against control_version, by outcome for the canary (win, loss, tie; none: no engagement).",
    ["model_version", "control_version", "outcome"],
    registry=None,
)

# --- retrainer: flywheel retrain -----------------------------------------------------------

OFFLINE_NDCG = Gauge(
    "flywheel_offline_ndcg_at_10",
    "Offline nDCG@10 of a model version on a labelled or held-out set.",
    ["model_version", "dataset"],
    registry=None,
)
GATE_DECISIONS = Counter(
    "flywheel_gate_decisions_total",
    "Gate decisions on candidate models.",
    ["outcome"],
    registry=None,
)
RETRAIN_RUNS = Counter(
    "flywheel_retrain_runs_total",
    "Retraining runs by outcome (skipped, rejected, canary, production, failed).",
    ["outcome"],
    registry=None,
)
RETRAIN_SECONDS = Histogram(
    "flywheel_retrain_duration_seconds",
    "Time per retraining stage (data, mine, train, register, index, gate, total).",
    ["stage"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
    registry=None,
)
RETRAIN_LAST_SUCCESS = Gauge(
    "flywheel_retrain_last_success_timestamp_seconds",
    "Unix time of the last retraining run that ended without error.",
    registry=None,
)

# --- canary: flywheel canary watch ---------------------------------------------------------

CANARY_DECISIONS = Counter(
    "flywheel_canary_decisions_total",
    "Canary controller decisions (promote, rollback, wait).",
    ["decision"],
    registry=None,
)
CANARY_NDCG_DIFF = Gauge(
    "flywheel_canary_ndcg_difference",
    "The canary's measured advantage at the last decision, with its bounds: win share - 1/2 "
    "when judged by interleaving, online nDCG@10 difference when judged by A/B.",
    ["bound"],
    registry=None,
)
CANARY_WATCH_LOOKS = Counter(
    "flywheel_canary_watch_looks_total",
    "Looks of `flywheel canary watch` by outcome: judged, idle (no canary), failed.",
    ["outcome"],
    registry=None,
)

OWNED: Final[Mapping[App, tuple[MetricWrapperBase, ...]]] = MappingProxyType(
    {
        "search": (
            SEARCH_LATENCY,
            SEARCH_REQUESTS,
            SEARCH_RESULTS,
            MODEL_INFO,
            MODEL_LOADS,
            MODEL_SWAPS,
            MODEL_RELEASES,
            INDEX_POINTS,
            EVENT_SINK_ERRORS,
            EVENTS_RECEIVED,
            EVENTS_REFUSED,
            EVENTS_LATENCY,
            EVENTS_PRODUCED,
            EVENT_BACKLOG,
            EVENT_SPOOL_BYTES,
            EVENTS_REPLAYED,
        ),
        "ingest": (
            EVENTS_INGESTED,
            EVENTS_REJECTED,
            EVENTS_DUPLICATE,
            CONSUMER_LAG,
            INGEST_BATCH_SIZE,
            INGEST_COMMIT_SECONDS,
            INGEST_STORE_FAILURES,
            INGEST_LAST_COMMIT,
            INGEST_PARTITIONS,
            OFFSET_GAPS,
            RECORDS_LOST,
            DEAD_LETTER_PUBLISH_ERRORS,
            ONLINE_NDCG,
            ONLINE_LISTS,
            ONLINE_NDCG_INTERVAL,
            ONLINE_CTR,
            ONLINE_CTR_INTERVAL,
            ONLINE_ADD_TO_CART,
            ONLINE_ADD_TO_CART_INTERVAL,
            ONLINE_PURCHASE,
            ONLINE_PURCHASE_INTERVAL,
            INTERLEAVING_LISTS,
        ),
        "retrainer": (
            OFFLINE_NDCG,
            GATE_DECISIONS,
            RETRAIN_RUNS,
            RETRAIN_SECONDS,
            RETRAIN_LAST_SUCCESS,
        ),
        "canary": (CANARY_DECISIONS, CANARY_NDCG_DIFF, CANARY_WATCH_LOOKS),
    }
)
"""The metrics each app exports (besides :data:`SHARED`)."""
SHARED: Final[tuple[MetricWrapperBase, ...]] = (BUILD_INFO,)
"""Metrics every app exports."""

# Counters with a closed set of outcomes start at 0, so `increase()` sees the first event
# even when it happens before the first scrape. Each is in one app's registry only, so only
# its owner exports these zeros.
for _outcome in ("ok", "failed"):
    MODEL_SWAPS.labels(outcome=_outcome)
for _outcome in ("passed", "rejected"):
    GATE_DECISIONS.labels(outcome=_outcome)
for _outcome in ("skipped", "rejected", "canary", "production", "failed"):
    RETRAIN_RUNS.labels(outcome=_outcome)
for _decision in ("promote", "rollback", "wait"):
    CANARY_DECISIONS.labels(decision=_decision)
for _kind in ("behind_log_start", "past_log_end", "topic_recreated"):
    OFFSET_GAPS.labels(kind=_kind)
for _reason in REJECT_REASONS:
    EVENTS_REJECTED.labels(reason=_reason)
for _sink_error in ("backlog_full", "delivery_failed", "spool_write_failed", "closing"):
    EVENT_SINK_ERRORS.labels(reason=_sink_error)
for _refusal in (*REJECT_REASONS, "backlog_full"):
    EVENTS_REFUSED.labels(reason=_refusal)


def _package_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        # Run from a source tree that was never installed: say so rather than fail the import.
        return "unknown"


_BUILD: Final[Mapping[str, str]] = MappingProxyType(
    {"version": _package_version(), "python": platform.python_version()}
)


def set_build_info(model_version: str = "") -> None:
    """Set :data:`BUILD_INFO`: the package and Python versions and ``model_version``, the
    production model this process serves ("" where it serves none). Thread-safe; each call
    replaces the previous labels, so no stale series remains after a swap."""
    BUILD_INFO.info({**_BUILD, "model_version": model_version})


set_build_info()


def _app_registry(app: App) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, *SHARED, *OWNED[app]):
        registry.register(collector)
    return registry


# Built at import, once per app: no lock needed for the lookups, and a metric declared in two
# groups fails here (duplicate timeseries) rather than at the first scrape.
_REGISTRIES: Final[Mapping[App, CollectorRegistry]] = MappingProxyType(
    {app: _app_registry(app) for app in APPS}
)


def registry_for(app: App) -> CollectorRegistry:
    """The registry ``app`` exports on /metrics (and pushes): its own metrics, build info, and
    the process, platform and GC collectors."""
    return _REGISTRIES[app]


def start_metrics_server(app: App, port: int, *, addr: str = "0.0.0.0") -> WSGIServer:
    """Serve ``app``'s registry on ``http://addr:port/metrics`` from a daemon thread until
    :func:`stop_metrics_server`; raises OSError if the port cannot be bound."""
    server, _thread = start_http_server(port, addr=addr, registry=registry_for(app))
    return server


def stop_metrics_server(server: WSGIServer) -> None:
    """Stop a server from :func:`start_metrics_server` and free its port."""
    server.shutdown()
    server.server_close()


@contextlib.contextmanager
def serving_metrics(
    app: App, port: int | None, *, addr: str = "0.0.0.0"
) -> Iterator[WSGIServer | None]:
    """Serve ``app``'s /metrics on ``port`` for the duration of the block (nothing when
    ``port`` is None or 0)."""
    if not port:
        yield None
        return
    server = start_metrics_server(app, port, addr=addr)
    try:
        yield server
    finally:
        stop_metrics_server(server)
