"""Derived tables: propensities, judgments, per-(query, product) stats, training pairs, online
metrics and interleaving outcomes, rebuilt from the raw events in one transaction.

Materialised tables rather than views: the click model runs in numpy between SQL steps, the
rebuild takes explicit parameters (``now``, clip, caps) instead of session state, and readers
(snapshots, Grafana through the snapshots) always see one consistent set. The SQL lives in
``sql/derived/*.sql``; the helper view ``list_products`` is a migration (003).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

import duckdb
import numpy as np
import pyarrow as pa

from feedback_ingest.store.click_model import PropensityEstimate, estimate_propensities
from feedback_ingest.store.writer import EventStore
from services.ingest_settings import DerivedSettings

logger = logging.getLogger(__name__)

DERIVED_TABLES = (
    "capped_lists",
    "propensities",
    "judgments",
    "query_product_stats",
    "training_pairs",
    "online_metrics",
    "online_metrics_by_arm",
    "interleaving_wins",
)
"""Rebuilt by :func:`refresh_derived`, in dependency order."""


@dataclass(frozen=True, slots=True)
class DerivedReport:
    """What one :func:`refresh_derived` produced."""

    now: datetime
    rows: dict[str, int]
    propensity_method: str
    """'em', 'fallback', or 'mixed' when some positions fell back."""


def _sql(name: str) -> str:
    return (resources.files("feedback_ingest.store") / "sql" / "derived" / f"{name}.sql").read_text(
        encoding="utf-8"
    )


def refresh_derived(
    store: EventStore, settings: DerivedSettings | None = None, *, now: datetime | None = None
) -> DerivedReport:
    """Rebuild every derived table from the events, atomically.

    ``now`` decides which served lists' attribution windows have closed (pass it explicitly
    in tests and replays); naive datetimes are taken as UTC.
    """
    cfg = settings or store.settings.derived
    with store.transaction() as con:
        return rebuild_derived(con, cfg, now=now)


def rebuild_derived(
    con: duckdb.DuckDBPyConnection, cfg: DerivedSettings, *, now: datetime | None = None
) -> DerivedReport:
    """:func:`refresh_derived` inside a transaction the caller holds (e.g. a snapshot's)."""
    at = _utc(now or datetime.now(UTC))
    for table in DERIVED_TABLES:
        con.execute(f"DELETE FROM {table}")
    caps = cfg.caps
    con.execute(_sql("capped_lists"), {"max_lists_per_session": caps.max_lists_per_session})
    share = {"max_client_share": caps.max_client_share, "min_client_lists": caps.min_client_lists}
    estimate = _fit_propensities(con, cfg)
    _store_propensities(con, estimate, at)
    con.execute(_sql("judgments"))
    con.execute(_sql("query_product_stats"), {"ips_max_weight": cfg.ips_max_weight, **share})
    con.execute(_sql("training_pairs"), {"max_pairs": cfg.max_pairs_per_query})
    window = {"now": at, "window_s": cfg.attribution_window_s, **share}
    con.execute(_sql("online_metrics"), window)
    con.execute(_sql("online_metrics_by_arm"))
    con.execute(_sql("interleaving_wins"), window)
    rows = {t: _count(con, t) for t in DERIVED_TABLES}
    methods = set(estimate.methods)
    method = methods.pop() if len(methods) == 1 else "mixed"
    logger.info("derived tables rebuilt at %s: %s (propensities: %s)", at, rows, method)
    return DerivedReport(now=at, rows=rows, propensity_method=method)


def _fit_propensities(con: duckdb.DuckDBPyConnection, cfg: DerivedSettings) -> PropensityEstimate:
    obs = con.execute(
        _sql("click_observations"), {"max_position": cfg.click_model.max_position}
    ).fetchnumpy()
    columns = {
        name: np.asarray(obs[name], dtype=np.int64)
        for name in ("pair_id", "position", "shown", "engaged")
    }
    return estimate_propensities(
        columns["pair_id"],
        columns["position"],
        columns["shown"],
        columns["engaged"],
        cfg.click_model,
    )


def _store_propensities(
    con: duckdb.DuckDBPyConnection, estimate: PropensityEstimate, at: datetime
) -> None:
    size = len(estimate.propensities)
    table = pa.table(
        {
            "position": pa.array(range(1, size + 1), pa.int32()),
            "propensity": pa.array(estimate.propensities, pa.float64()),
            "method": pa.array(estimate.methods, pa.string()),
            "observations": pa.array(estimate.observations, pa.int64()),
            "estimated_at": pa.array([at] * size, pa.timestamp("us", tz="UTC")),
        }
    )
    con.register("fitted_propensities", table)
    try:
        con.execute("INSERT INTO propensities BY NAME SELECT * FROM fitted_propensities")
    finally:
        con.unregister("fitted_propensities")


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
