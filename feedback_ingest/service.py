"""The long-running ``flywheel ingest`` process: poll loop, snapshots, online-metric gauges."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from feedback_ingest.consumer import BatchStats, Ingestor
from feedback_ingest.store import (
    EventStore,
    StoreError,
    apply_retention,
    refresh_derived,
    write_snapshot,
)
from services import snapshots
from services.metrics import (
    INGEST_STORE_FAILURES,
    INTERLEAVING_LISTS,
    ONLINE_ADD_TO_CART,
    ONLINE_ADD_TO_CART_INTERVAL,
    ONLINE_CTR,
    ONLINE_CTR_INTERVAL,
    ONLINE_LISTS,
    ONLINE_NDCG,
    ONLINE_NDCG_INTERVAL,
    ONLINE_PURCHASE,
    ONLINE_PURCHASE_INTERVAL,
    start_metrics_server,
    stop_metrics_server,
)
from services.settings import Settings

logger = logging.getLogger(__name__)

SNAPSHOT_REQUEST = snapshots.SNAPSHOT_REQUEST

T = TypeVar("T")


def store_path(settings: Settings) -> Path:
    """The DuckDB file feedback_ingest writes."""
    return settings.store_path


def exports_dir(settings: Settings) -> Path:
    """Where Parquet snapshots go (the retrainer reads only these)."""
    return settings.exports_dir


def request_snapshot(settings: Settings, wait_s: float = 60) -> Path:
    """Ask the running ingest for a snapshot and wait for it
    (:func:`services.snapshots.request_snapshot`)."""
    return snapshots.request_snapshot(exports_dir(settings), wait_s)


def snapshot_store(store: EventStore, settings: Settings) -> Path:
    """Archive the raw events past the retention horizon, then write a snapshot: the hot store
    stays bounded, and the snapshot names the archive's files for the days archived."""
    apply_retention(store, exports_dir(settings))
    return write_snapshot(store, exports_dir(settings), keep=settings.ingest.store.keep_snapshots)


def publish_online_metrics(
    store: EventStore, settings: Settings, *, training: bool = False
) -> None:
    """Bring the derived tables up to date and export the online metrics per model version and
    arm (with their 95% intervals) and the interleaving outcomes per canary and control version.

    The training tables (propensities, IPS weights, pairs) are left to the next snapshot, their
    reader, unless ``training``: they read every judgment, the online metrics only hot lists."""
    refresh_derived(store, settings.ingest.store.derived, training=training)
    rows = store.con.execute(
        "SELECT model_version, arm, lists, mean_ndcg_at_10, ndcg_at_10_lower, ndcg_at_10_upper, "
        "ctr_at_10, ctr_at_10_lower, ctr_at_10_upper, "
        "add_to_cart_rate, add_to_cart_rate_lower, add_to_cart_rate_upper, "
        "purchase_rate, purchase_rate_lower, purchase_rate_upper FROM online_metrics_by_arm"
    ).fetchall()
    rates = (
        (ONLINE_NDCG, ONLINE_NDCG_INTERVAL),
        (ONLINE_CTR, ONLINE_CTR_INTERVAL),
        (ONLINE_ADD_TO_CART, ONLINE_ADD_TO_CART_INTERVAL),
        (ONLINE_PURCHASE, ONLINE_PURCHASE_INTERVAL),
    )
    for version, arm, lists, *values in rows:
        ONLINE_LISTS.labels(model_version=version, arm=arm).set(lists)
        for i, (gauge, interval) in enumerate(rates):
            value, lower, upper = values[3 * i : 3 * i + 3]
            gauge.labels(model_version=version, arm=arm).set(value or 0.0)
            for bound, at in (("lower", lower), ("upper", upper)):
                if at is None:  # nDCG below two lists: no interval rather than a made-up one
                    with contextlib.suppress(KeyError):
                        interval.remove(version, arm, bound)
                else:
                    interval.labels(model_version=version, arm=arm, bound=bound).set(at)
    outcomes = store.con.execute(
        "SELECT model_version, control_version, wins, losses, ties, lists - engaged_lists "
        "FROM interleaving_wins"
    ).fetchall()
    for version, control, *counts in outcomes:
        for outcome, count in zip(("win", "loss", "tie", "none"), counts, strict=True):
            INTERLEAVING_LISTS.labels(
                model_version=version, control_version=control, outcome=outcome
            ).set(count)


class _StoreRetry:
    """Backs off after the store refused a batch; after ``ingest.store_retries`` refusals in a
    row it raises, so the process exits non-zero: an ingest that stores nothing must not look
    alive (``flywheel_ingest_store_failures_total`` and the last-commit gauge show it)."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        self.settings = settings
        self.stop = stop
        self.failures = 0

    def attempt(self, step: Callable[..., T], *args: Any) -> T | None:
        """``step(*args)``, or None after a StoreError (backed off, or raised when it was one
        too many). Only a committed batch resets the count (see :class:`BatchStats`)."""
        try:
            result = step(*args)
        except StoreError as exc:
            self.failed(exc)
            return None
        if isinstance(result, BatchStats) and result.committed:
            self.failures = 0
        return result

    def failed(self, exc: StoreError) -> None:
        cfg, path = self.settings.ingest, self.settings.store_path
        self.failures += 1
        INGEST_STORE_FAILURES.inc()
        if self.failures > cfg.store_retries:
            logger.error(
                "giving up: the event store %s refused %d batches in a row (last: %s). Check "
                "the disk (df -h %s) and the DuckDB file, then restart `flywheel ingest`; "
                "nothing was skipped, it resumes from the stored offsets.",
                path,
                self.failures,
                exc,
                path.parent,
            )
            raise StoreError(
                f"the event store refused {self.failures} batches in a row; see the log above"
            ) from exc
        wait = min(cfg.store_retry_max_s, cfg.store_retry_initial_s * 2 ** (self.failures - 1))
        logger.warning(
            "store failure %d of %d allowed; retrying in %.1f s",
            self.failures,
            cfg.store_retries,
            wait,
        )
        self.stop.wait(wait)


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT let the current batch finish, then stop (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s: finishing the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def run_ingest(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    bootstrap: str | None = None,
    idle_exit_s: float | None = None,
) -> None:
    """Consume until ``stop`` is set, SIGTERM/SIGINT arrives (the current batch finishes), or
    nothing arrived for ``idle_exit_s`` (drain-and-exit runs, e.g. a Kubernetes Job)."""
    cfg = settings.ingest
    stop = stop or threading.Event()
    store = EventStore(store_path(settings), cfg.store)
    _stop_on_signals(stop)
    metrics_server = (
        start_metrics_server("ingest", cfg.metrics_port, addr=cfg.metrics_host)
        if cfg.metrics_port
        else None
    )
    ingestor = Ingestor(settings.kafka, store, bootstrap, metadata_refresh_s=cfg.metadata_refresh_s)
    exports = exports_dir(settings)
    request = exports / SNAPSHOT_REQUEST
    last_snapshot = last_metrics = last_record = time.monotonic()
    changed = False
    window = cfg.store.derived.attribution_window_s
    retry = _StoreRetry(settings, stop)
    try:
        ingestor.start()
        while not stop.is_set():
            stats = retry.attempt(ingestor.poll_batch, cfg.poll_timeout_ms)
            if stats is None:
                continue
            now = time.monotonic()
            if stats.records:
                logger.debug("batch: %s", stats)
                last_record = now
                changed = True
            elif idle_exit_s is not None and now - last_record >= idle_exit_s:
                logger.info("no events for %.0f s; exiting", idle_exit_s)
                break
            snapshot_due = request.exists() or now - last_snapshot >= cfg.snapshot_interval_s
            metrics_due = now - last_metrics >= cfg.online_metrics_interval_s and (
                # An idle ingest recomputes once more when the last lists' attribution
                # windows have closed, then leaves the cores alone until events arrive.
                changed or last_metrics < last_record + window <= now
            )
            # Readers of the store must see no batch half-way: finish the write in flight.
            if (snapshot_due or metrics_due) and retry.attempt(ingestor.flush) is None:
                continue
            if snapshot_due:
                # Take the request first: one made while this snapshot is written asks for a
                # newer one, and gets it on the next pass.
                request.unlink(missing_ok=True)
                folder = snapshot_store(store, settings)
                logger.info("snapshot %s", folder.name)
                last_snapshot = last_metrics = now
            elif metrics_due:
                publish_online_metrics(store, settings)
                last_metrics = now
                changed = False
        # Leave derived tables (judgments, pairs, online metrics) current for readers.
        ingestor.flush()
        publish_online_metrics(store, settings, training=True)
    finally:
        ingestor.close()
        store.close()
        if metrics_server is not None:
            stop_metrics_server(metrics_server)
        logger.info("ingest stopped at %s", datetime.now(UTC).isoformat(timespec="seconds"))
