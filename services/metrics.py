"""Every Prometheus metric Flywheel exports, declared once, with its buckets.

Names follow Prometheus conventions: the ``flywheel_`` prefix, base units in the name
(``_seconds``), ``_total`` on counters, and label values from small closed sets (model
versions are bounded by the registry's garbage collection).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from services.events import REJECT_REASONS

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
MODEL_SWAPS = Counter(
    "flywheel_model_swaps_total",
    "Hot swaps of the serving models after a registry change, by outcome (ok, failed).",
    ["outcome"],
)
MODEL_RELEASES = Counter(
    "flywheel_model_releases_total",
    "Model versions closed after a swap, once no in-flight request could still use them.",
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
EVENTS_INGESTED = Counter(
    "flywheel_events_ingested_total",
    "Valid events read by feedback_ingest, by action (query = served list); re-deliveries "
    "are included and also counted in flywheel_events_duplicate_total.",
    ["action"],
)
EVENTS_REJECTED = Counter(
    "flywheel_events_rejected_total",
    "Kafka records feedback_ingest sent to the dead-letter store, by reason.",
    ["reason"],
)
EVENTS_DUPLICATE = Counter(
    "flywheel_events_duplicate_total",
    "Re-delivered events feedback_ingest ignored (their event_id was already stored).",
)
CONSUMER_LAG = Gauge(
    "flywheel_consumer_lag_records", "Records not yet ingested, per partition.", ["partition"]
)
INGEST_BATCH_SIZE = Histogram(
    "flywheel_ingest_batch_records",
    "Records per ingested poll batch.",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500),
)
INGEST_COMMIT_SECONDS = Histogram(
    "flywheel_ingest_commit_seconds",
    "Time to commit one batch (events, dead letters, offsets) to DuckDB.",
    buckets=LATENCY_BUCKETS,
)
INGEST_STORE_FAILURES = Counter(
    "flywheel_ingest_store_failures_total",
    "Poll batches the DuckDB store refused (disk full, invalidated database); the ingest "
    "retries with backoff, then exits non-zero.",
)
INGEST_LAST_COMMIT = Gauge(
    "flywheel_ingest_last_commit_timestamp_seconds",
    "Unix time of the last poll batch feedback_ingest committed to DuckDB.",
)
INGEST_PARTITIONS = Gauge(
    "flywheel_ingest_partitions", "Partitions of the events topic the ingest reads."
)
OFFSET_GAPS = Counter(
    "flywheel_ingest_offset_gaps_total",
    "Stored offsets found outside their partition's log, by kind (behind_log_start, "
    "past_log_end, topic_recreated); each is also a row of the offset_gaps table.",
    ["kind"],
)
RECORDS_LOST = Counter(
    "flywheel_ingest_records_lost_total",
    "Records the ingest knows it can never read (gone before it read them); a lower bound.",
)
DEAD_LETTER_PUBLISH_ERRORS = Counter(
    "flywheel_ingest_dead_letter_publish_errors_total",
    "Dead letters not confirmed on the dead-letter topic (they are in the DuckDB table).",
)
EVENT_SPOOL_BYTES = Gauge(
    "flywheel_event_spool_bytes",
    "Bytes of events in encoder_server's durable spool, not yet acknowledged by Kafka.",
)
EVENTS_REPLAYED = Counter(
    "flywheel_events_replayed_total",
    "Events found in the spool at start (not acknowledged before a stop or crash) and re-sent.",
)
ONLINE_NDCG = Gauge(
    "flywheel_online_ndcg_at_10",
    "Mean online nDCG@10 of served lists whose attribution window has closed.",
    ["model_version", "arm"],
)
ONLINE_LISTS = Gauge(
    "flywheel_online_lists",
    "Served lists counted in the online metrics.",
    ["model_version", "arm"],
)
ONLINE_NDCG_INTERVAL = Gauge(
    "flywheel_online_ndcg_at_10_interval",
    "95% interval of flywheel_online_ndcg_at_10 (mean +- 1.96 standard errors), by bound "
    "(lower, upper); absent below two lists.",
    ["model_version", "arm", "bound"],
)
ONLINE_CTR = Gauge(
    "flywheel_online_ctr_at_10",
    "Share of served lists (attribution window closed) with an engagement in the top 10.",
    ["model_version", "arm"],
)
ONLINE_CTR_INTERVAL = Gauge(
    "flywheel_online_ctr_at_10_interval",
    "95% Wilson interval of flywheel_online_ctr_at_10, by bound (lower, upper).",
    ["model_version", "arm", "bound"],
)
ONLINE_ADD_TO_CART = Gauge(
    "flywheel_online_add_to_cart_ratio",
    "Share of served lists (attribution window closed) with an add-to-cart or purchase.",
    ["model_version", "arm"],
)
ONLINE_ADD_TO_CART_INTERVAL = Gauge(
    "flywheel_online_add_to_cart_ratio_interval",
    "95% Wilson interval of flywheel_online_add_to_cart_ratio, by bound (lower, upper).",
    ["model_version", "arm", "bound"],
)
ONLINE_PURCHASE = Gauge(
    "flywheel_online_purchase_ratio",
    "Share of served lists (attribution window closed) with a purchase.",
    ["model_version", "arm"],
)
ONLINE_PURCHASE_INTERVAL = Gauge(
    "flywheel_online_purchase_ratio_interval",
    "95% Wilson interval of flywheel_online_purchase_ratio, by bound (lower, upper).",
    ["model_version", "arm", "bound"],
)
INTERLEAVING_LISTS = Gauge(
    "flywheel_interleaving_lists",
    "Team-draft interleaved lists (attribution window closed) of a canary model_version "
    "against control_version, by outcome for the canary (win, loss, tie; none: no engagement).",
    ["model_version", "control_version", "outcome"],
)
OFFLINE_NDCG = Gauge(
    "flywheel_offline_ndcg_at_10",
    "Offline nDCG@10 of a model version on a labelled or held-out set.",
    ["model_version", "dataset"],
)
GATE_DECISIONS = Counter(
    "flywheel_gate_decisions_total", "Gate decisions on candidate models.", ["outcome"]
)
RETRAIN_RUNS = Counter(
    "flywheel_retrain_runs_total",
    "Retraining runs by outcome (skipped, rejected, canary, production, failed).",
    ["outcome"],
)
RETRAIN_SECONDS = Histogram(
    "flywheel_retrain_duration_seconds",
    "Time per retraining stage (data, mine, train, register, index, gate, total).",
    ["stage"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
RETRAIN_LAST_SUCCESS = Gauge(
    "flywheel_retrain_last_success_timestamp_seconds",
    "Unix time of the last retraining run that ended without error.",
)
CANARY_DECISIONS = Counter(
    "flywheel_canary_decisions_total",
    "Canary controller decisions (promote, rollback, wait).",
    ["decision"],
)
CANARY_NDCG_DIFF = Gauge(
    "flywheel_canary_ndcg_difference",
    "The canary's measured advantage at the last decision, with its bounds: win share - 1/2 "
    "when judged by interleaving, online nDCG@10 difference when judged by A/B.",
    ["bound"],
)
CANARY_WATCH_LOOKS = Counter(
    "flywheel_canary_watch_looks_total",
    "Looks of `flywheel canary watch` by outcome: judged, idle (no canary), failed.",
    ["outcome"],
)
BUILD_INFO = Info("flywheel_build", "Flywheel version.")

# Counters with a closed set of outcomes start at 0, so `increase()` sees the first event
# even when it happens before the first scrape.
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
