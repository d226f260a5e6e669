"""Every Prometheus metric Flywheel exports, declared once, with its buckets.

Names follow Prometheus conventions: the ``flywheel_`` prefix, base units in the name
(``_seconds``), ``_total`` on counters, and label values from small closed sets (model
versions are bounded by the registry's garbage collection).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

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

SEARCH_LATENCY = Histogram(
    "flywheel_search_latency_seconds",
    "Time spent serving GET /search, by stage (encode, retrieve, total).",
    ["stage", "mode"],
    buckets=LATENCY_BUCKETS,
)
SEARCH_REQUESTS = Counter(
    "flywheel_search_requests_total",
    "Search requests by HTTP status class, model version and arm.",
    ["status", "model_version", "arm"],
)
SEARCH_RESULTS = Histogram(
    "flywheel_search_results",
    "Number of results returned per search.",
    buckets=(0, 1, 5, 10, 20, 50, 100),
)
MODEL_INFO = Gauge(
    "flywheel_model_loaded_info",
    "1 for each model version loaded by this encoder_server, by arm.",
    ["model_version", "arm"],
)
MODEL_LOADS = Counter(
    "flywheel_model_loads_total", "Model versions loaded (or failed to load).", ["outcome"]
)
INDEX_POINTS = Gauge(
    "flywheel_index_points", "Products in the index of a loaded model version.", ["model_version"]
)
EVENT_SINK_ERRORS = Counter(
    "flywheel_event_sink_errors_total", "Events the sink failed to deliver or dropped.", ["reason"]
)
EVENTS_RECEIVED = Counter(
    "flywheel_events_received_total", "Interactions taken by POST /events, by action.", ["action"]
)
EVENTS_REFUSED = Counter(
    "flywheel_events_refused_total", "Interactions POST /events refused, by reason.", ["reason"]
)
EVENTS_PRODUCED = Counter(
    "flywheel_events_produced_total", "Events acknowledged by Kafka, by type.", ["type"]
)
EVENT_BACKLOG = Gauge(
    "flywheel_event_backlog", "Events queued in encoder_server, not yet acknowledged by Kafka."
)
OFFLINE_NDCG = Gauge(
    "flywheel_offline_ndcg_at_10",
    "Offline nDCG@10 of a model version on a labelled or held-out set.",
    ["model_version", "dataset"],
)
BUILD_INFO = Info("flywheel_build", "Flywheel version.")
