"""Bookkeeping of the derived tables: what they have folded in, and with which settings.

One row, ``derived_state`` (migration 009): the store's id (so snapshots never mix files of two
stores), the watermark (every event with ``seq`` at or below it is in the derived tables), the
settings the per-list rows and the training tables were derived with, and the horizon of the
online metrics (the first instant retention kept hot).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import duckdb


@dataclass(frozen=True, slots=True)
class DerivedState:
    """The ``derived_state`` row."""

    store_id: str
    watermark: int
    list_settings: str | None
    training_settings: str | None
    online_since: datetime | None


def read_state(con: duckdb.DuckDBPyConnection) -> DerivedState:
    """The derived tables' bookkeeping row (the migration creates it)."""
    row = con.execute(
        "SELECT store_id, watermark, list_settings, training_settings, online_since "
        "FROM derived_state WHERE id = 1"
    ).fetchone()
    assert row is not None, "migration 009 creates the derived_state row"
    store_id, watermark, list_settings, training_settings, online_since = row
    return DerivedState(
        str(store_id), int(watermark), list_settings, training_settings, online_since
    )


def newest_seq(con: duckdb.DuckDBPyConnection) -> int:
    """The highest ``seq`` of any hot event (0 when the store holds none)."""
    row = con.execute(
        "SELECT greatest((SELECT coalesce(max(seq), 0) FROM queries), "
        "(SELECT coalesce(max(seq), 0) FROM interactions))"
    ).fetchone()
    return int(row[0]) if row else 0


def count_rows(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Rows in ``table``."""
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def derived_sql(name: str) -> str:
    """The text of ``sql/derived/<name>.sql``."""
    folder = resources.files("feedback_ingest.store") / "sql" / "derived"
    return (folder / f"{name}.sql").read_text(encoding="utf-8")
