"""The per-list stage of the derived tables: only lists with events newer than the watermark.

Every event carries ``seq``, the order the store took it in. A refresh derives again the hot
lists that have an event above the watermark (``touched``) and the lists of their sessions
whose rank moved across the session cap (``affected``), and nothing else:

1. the affected lists' old contributions (``contributions.sql``) are subtracted from the
   additive counts (``qp_counts``, ``click_counts``) and their judgments deleted;
2. the touched lists' facts and online outcomes are derived from their raw events, and the
   sessions with a new list are ranked again (``new_caps``);
3. the new contributions are added and judged.

The counts are integers, so subtracting and adding again is exact: a store refreshed after
every batch holds the same rows as one derived once from all events. A change of the settings
the per-list rows depend on (attribution window, session cap) derives every hot list again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import duckdb

from feedback_ingest.store.state import count_rows, derived_sql, newest_seq, read_state
from services.ingest_settings import DerivedSettings

logger = logging.getLogger(__name__)

_TEMP = ("touched", "new_caps", "affected", "contributions")


@dataclass(frozen=True, slots=True)
class ListUpdate:
    """What one per-list pass derived."""

    touched: int
    """Lists derived again from their raw events."""
    affected: int
    """Lists whose contribution changed (touched, or moved across the session cap)."""
    full: bool
    """Every hot list was derived again (asked for, or the per-list settings changed)."""


def list_settings(cfg: DerivedSettings) -> str:
    """The settings the per-list rows depend on, as stored in ``derived_state``."""
    return json.dumps(
        {
            "attribution_window_s": cfg.attribution_window_s,
            "max_lists_per_session": cfg.caps.max_lists_per_session,
        },
        sort_keys=True,
    )


def update_lists(
    con: duckdb.DuckDBPyConnection, cfg: DerivedSettings, *, full: bool = False
) -> ListUpdate:
    """Fold every event above the watermark into the per-list tables, inside the caller's
    transaction; return how many lists it derived again."""
    state = read_state(con)
    settings = list_settings(cfg)
    full = full or state.list_settings != settings
    watermark = 0 if full else state.watermark
    newest = newest_seq(con)
    con.execute(derived_sql("touched"), {"watermark": watermark})
    con.execute(
        derived_sql("new_caps"),
        {"watermark": watermark, "max_lists_per_session": cfg.caps.max_lists_per_session},
    )
    con.execute(derived_sql("affected"))
    touched, affected = (count_rows(con, "touched"), count_rows(con, "affected"))
    if affected:
        _rederive(con, cfg)
    con.execute(
        "UPDATE derived_state SET watermark = greatest(watermark, ?), list_settings = ? "
        "WHERE id = 1",
        [newest, settings],
    )
    for table in _TEMP:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    if affected:
        logger.debug("derived %d touched lists again (%d affected)", touched, affected)
    return ListUpdate(touched, affected, full)


def _rederive(con: duckdb.DuckDBPyConnection, cfg: DerivedSettings) -> None:
    con.execute(derived_sql("contributions"))
    _add_counts(con, -1)
    for table in ("judgments", "judged_lists"):
        con.execute(f"DELETE FROM {table} WHERE query_id IN (SELECT query_id FROM affected)")
    for table in ("list_facts", "list_outcomes"):
        con.execute(f"DELETE FROM {table} WHERE query_id IN (SELECT query_id FROM touched)")
    con.execute("DELETE FROM capped_lists WHERE query_id IN (SELECT query_id FROM new_caps)")
    con.execute("INSERT INTO capped_lists SELECT * FROM new_caps")
    window = {"window_s": cfg.attribution_window_s}
    con.execute(derived_sql("list_facts"), window)
    con.execute(derived_sql("list_outcomes"))
    con.execute(derived_sql("contributions"))
    _add_counts(con, 1)
    con.execute(derived_sql("judgments"))
    con.execute(derived_sql("judged_lists"))
    # A pair whose every list left the counted set has no row in a rebuild either.
    con.execute("DELETE FROM qp_counts WHERE impressions = 0")
    con.execute("DELETE FROM click_counts WHERE shown = 0")


def _add_counts(con: duckdb.DuckDBPyConnection, sign: int) -> None:
    con.execute(derived_sql("qp_counts"), {"sign": sign})
    con.execute(derived_sql("click_counts"), {"sign": sign})
