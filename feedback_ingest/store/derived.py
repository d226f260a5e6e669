"""Derived tables: propensities, judgments, per-(query, product) stats, training pairs, online
metrics and interleaving outcomes, kept current incrementally in one transaction.

Three stages, each reading only what it needs:

- per list (:mod:`.lists`): the lists with events newer than the watermark are derived again
  from their raw events; judgments and the additive counts per (query, product) and per
  position are updated by difference. This is the only stage that reads raw events.
- training (when any list changed since, or the settings did; skipped on ``training=False``,
  as the ingest's frequent online refresh does, leaving it for the next snapshot): the click
  model is fitted on the exposure counts, then IPS weights (from the judgments of grade >= 1
  and their clients) and training pairs. This stage reads every judgment, so it runs only
  when its result is read. Its inputs are kept across retention, so the training data covers
  every list ever counted, not only those still hot.
- online (every refresh, as ``now`` closes windows): online metrics per list, per arm, and
  interleaving outcomes, from one compact row per hot list (``list_outcomes``), restricted to
  lists served at or after the retention horizon.

Materialised tables rather than views: the click model runs in numpy between SQL steps, the
refresh takes explicit parameters (``now``, clip, caps) instead of session state, and readers
(snapshots, Grafana through the snapshots) always see one consistent set. The SQL lives in
``sql/derived/*.sql``; the bookkeeping tables are migration 009's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from feedback_ingest.store.click_model import PropensityEstimate, estimate_propensities
from feedback_ingest.store.lists import update_lists
from feedback_ingest.store.state import count_rows, derived_sql, read_state
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
"""The derived tables readers see, in dependency order."""

_TRAINING = ("propensities", "query_product_stats", "training_pairs")
_ONLINE = ("online_metrics", "online_metrics_by_arm", "interleaving_wins")


@dataclass(frozen=True, slots=True)
class DerivedReport:
    """What one :func:`refresh_derived` produced."""

    now: datetime
    rows: dict[str, int]
    propensity_method: str
    """'em', 'fallback', or 'mixed' when some positions fell back."""
    lists_derived: int = 0
    """Lists derived again from their raw events (all hot lists when ``full``)."""
    full: bool = False
    """Every hot list was derived again."""


def refresh_derived(
    store: EventStore,
    settings: DerivedSettings | None = None,
    *,
    now: datetime | None = None,
    full: bool = False,
    training: bool = True,
    online_since: datetime | None = None,
) -> DerivedReport:
    """Bring the derived tables up to date with the events, atomically.

    ``now`` decides which served lists' attribution windows have closed (pass it explicitly
    in tests and replays); naive datetimes are taken as UTC. ``full`` derives every hot list
    again instead of only those with new events (the result is the same). ``training=False``
    leaves propensities, query-product stats and training pairs for a later refresh.
    ``online_since`` overrides the retention horizon the online metrics start at.
    """
    cfg = settings or store.settings.derived
    with store.transaction() as con:
        return rebuild_derived(
            con, cfg, now=now, full=full, training=training, online_since=online_since
        )


def rebuild_derived(
    con: duckdb.DuckDBPyConnection,
    cfg: DerivedSettings,
    *,
    now: datetime | None = None,
    full: bool = False,
    training: bool = True,
    online_since: datetime | None = None,
) -> DerivedReport:
    """:func:`refresh_derived` inside a transaction the caller holds (e.g. a snapshot's)."""
    at = _utc(now or datetime.now(UTC))
    lists = update_lists(con, cfg, full=full)
    state = read_state(con)
    derived_with = cfg.model_dump_json()
    current = not lists.affected and state.training_settings == derived_with
    if not current:
        if training:
            _derive_training(con, cfg, at)
        stamp = derived_with if training else None  # NULL: the training tables are behind
        con.execute("UPDATE derived_state SET training_settings = ? WHERE id = 1", [stamp])
    since = _utc(online_since) if online_since else state.online_since
    _derive_online(con, cfg, at, since)
    rows = {t: count_rows(con, t) for t in DERIVED_TABLES}
    method = _method(con)
    logger.info(
        "derived tables refreshed at %s: %d lists derived again%s; %s (propensities: %s)",
        at,
        lists.touched,
        " (full)" if lists.full else "",
        rows,
        method,
    )
    return DerivedReport(at, rows, method, lists.touched, lists.full)


def _derive_training(con: duckdb.DuckDBPyConnection, cfg: DerivedSettings, at: datetime) -> None:
    for table in _TRAINING:
        con.execute(f"DELETE FROM {table}")
    _store_propensities(con, _fit_propensities(con, cfg), at)
    caps = cfg.caps
    share = {"max_client_share": caps.max_client_share, "min_client_lists": caps.min_client_lists}
    con.execute(derived_sql("query_product_stats"), {"ips_max_weight": cfg.ips_max_weight, **share})
    con.execute(derived_sql("training_pairs"), {"max_pairs": cfg.max_pairs_per_query})


def _derive_online(
    con: duckdb.DuckDBPyConnection, cfg: DerivedSettings, at: datetime, since: datetime | None
) -> None:
    for table in _ONLINE:
        con.execute(f"DELETE FROM {table}")
    caps = cfg.caps
    window = {
        "now": at,
        "since": since,
        "window_s": cfg.attribution_window_s,
        "max_client_share": caps.max_client_share,
        "min_client_lists": caps.min_client_lists,
    }
    con.execute(derived_sql("online_metrics"), window)
    con.execute(derived_sql("online_metrics_by_arm"))
    con.execute(derived_sql("interleaving_wins"), window)


def _method(con: duckdb.DuckDBPyConnection) -> str:
    methods = {
        str(r[0]) for r in con.execute("SELECT DISTINCT method FROM propensities").fetchall()
    }
    return methods.pop() if len(methods) == 1 else "mixed" if methods else "fallback"


def _fit_propensities(con: duckdb.DuckDBPyConnection, cfg: DerivedSettings) -> PropensityEstimate:
    obs = con.execute(
        derived_sql("click_observations"), {"max_position": cfg.click_model.max_position}
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


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
