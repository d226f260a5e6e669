"""Retention: raw events of days past the horizon leave the DuckDB file for a Parquet archive.

The horizon is midnight UTC ``retention_days`` before today. Older served lists leave with
all their interactions (a list is never split between the archive and the hot store), and so
do interactions older than the horizon whose list is not hot (it never arrived, or left
earlier), and older dead letters. The archive is hive-style, one file per batch and day::

    <archive>/<table>/day=YYYY-MM-DD/part-<batch>.parquet

with the hot table's columns (less ``seq``), partitioned by the UTC day of the row's own time.

What the training data needs stays: judgments, the clients of judged lists and the additive
counts per (query, product) are kept in DuckDB (see :mod:`.lists`), so training pairs and IPS
weights still cover every list ever counted. Online metrics cover the lists served since the
horizon. A batch is archived in three steps, so that a crash anywhere loses and duplicates
nothing:

1. plan: one transaction records the batch's rows (by key) in ``archive_plan``;
2. write: each (table, day) of the plan is copied to a temporary file, fsynced and renamed to
   its final name (the batch's), then the folder is fsynced. The content is exactly the
   planned rows, which stay hot until step 3, so writing again gives the same file;
3. commit: one transaction folds every event into the derived tables, records the files in
   ``archive_files`` (what snapshots read), deletes the planned rows and their lists' per-list
   state, and empties the plan.

A run that finds a plan (a crash after step 1) writes and commits it before planning anew.
Known limit: an event delivered again after its day was archived (Kafka offsets rewound past
the retention horizon) is stored again in the hot store, as DuckDB no longer knows its key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb

from feedback_ingest.store.derived import rebuild_derived
from feedback_ingest.store.files import publish
from feedback_ingest.store.writer import EventStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Raw:
    """How one raw table is archived."""

    key: str
    """The row's key as text, over the alias ``t`` (what ``archive_plan.key`` holds)."""
    ts: str
    """The column whose UTC day partitions the archive."""
    columns: str
    """What the archive keeps of a row."""


RAW_TABLES = {
    "queries": _Raw("t.query_id", "ts", "t.* EXCLUDE (seq)"),
    "interactions": _Raw("t.event_id", "ts", "t.* EXCLUDE (seq)"),
    "dead_letters": _Raw("t.id::VARCHAR", "received_at", "t.*"),
}
"""The tables retention empties."""

_PLAN = (
    (
        "queries",
        "SELECT 'queries', query_id, ts::DATE, $batch, $horizon FROM queries WHERE ts < $horizon",
    ),
    (  # the interactions of the lists leaving, whatever their own time
        "lists' interactions",
        "SELECT 'interactions', event_id, ts::DATE, $batch, $horizon FROM interactions "
        "WHERE query_id IN (SELECT key FROM archive_plan WHERE tbl = 'queries' AND batch = $batch)",
    ),
    (  # old interactions of no hot list: theirs never arrived, or left earlier
        "orphan interactions",
        "SELECT 'interactions', event_id, ts::DATE, $batch, $horizon FROM interactions "
        "WHERE ts < $horizon AND query_id NOT IN (SELECT query_id FROM queries)",
    ),
    (
        "dead letters",
        "SELECT 'dead_letters', id::VARCHAR, received_at::DATE, $batch, $horizon "
        "FROM dead_letters WHERE received_at < $horizon",
    ),
)
"""What a batch takes, in order (an interaction follows its list)."""


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one :func:`apply_retention` archived."""

    horizon: datetime | None
    """Rows older than this left the hot store (None: retention is off)."""
    rows: dict[str, int]
    """Rows archived per table (by this run, including a batch it finished for a crashed run)."""
    files: tuple[Path, ...]


def horizon_at(now: datetime, days: int) -> datetime:
    """Midnight UTC ``days`` days before ``now``'s day: the first instant kept hot."""
    today = now.astimezone(UTC).date() if now.tzinfo else now.date()
    return datetime.combine(today - timedelta(days=days), time(), tzinfo=UTC)


def apply_retention(
    store: EventStore,
    exports_dir: Path,
    *,
    now: datetime | None = None,
    days: int | None = None,
) -> RetentionReport:
    """Archive the raw events older than the horizon, then delete them from the store.

    ``days`` defaults to ``store.settings.retention_days`` (0: retention is off, though a
    batch a crashed run left is still finished). The archive is
    ``store.settings.archive_root(exports_dir)``.
    """
    at = now or datetime.now(UTC)
    keep = days if days is not None else store.settings.retention_days
    root = store.settings.archive_root(exports_dir)
    rows: dict[str, int] = {}
    files: list[Path] = []
    for pending, since in _pending(store):  # a run that crashed between plan and commit
        logger.warning("finishing archive batch %d that an earlier run left", pending)
        _archive(store, root, pending, since, at, rows, files)
    if not keep:
        return RetentionReport(None, rows, tuple(files))
    horizon = horizon_at(at, keep)
    batch = _plan(store, horizon)
    if batch is not None:
        _archive(store, root, batch, horizon, at, rows, files)
    if rows:
        logger.info("archived %s older than %s into %s", rows, horizon.date(), root)
    return RetentionReport(horizon, rows, tuple(files))


def _pending(store: EventStore) -> list[tuple[int, datetime]]:
    with store.transaction() as con:
        found = con.execute(
            "SELECT DISTINCT batch, horizon FROM archive_plan ORDER BY batch"
        ).fetchall()
    return [(int(batch), horizon) for batch, horizon in found]


def _plan(store: EventStore, horizon: datetime) -> int | None:
    """Record the rows to archive; return their batch (None: nothing is older)."""
    with store.transaction() as con:
        con.execute(
            "UPDATE derived_state SET online_since = greatest(coalesce(online_since, ?), ?) "
            "WHERE id = 1",
            [horizon, horizon],
        )
        row = con.execute("SELECT nextval('archive_batches')").fetchone()
        assert row is not None
        batch = int(row[0])
        planned: dict[str, int] = {}
        for what, select in _PLAN:
            if what == "lists' interactions" and not planned["queries"]:
                continue  # no list leaves: no scan for their interactions
            inserted = con.execute(
                f"INSERT INTO archive_plan {select}", {"batch": batch, "horizon": horizon}
            ).fetchone()
            planned[what] = int(inserted[0]) if inserted else 0
    return batch if any(planned.values()) else None


def _archive(
    store: EventStore,
    root: Path,
    batch: int,
    horizon: datetime,
    now: datetime,
    rows: dict[str, int],
    files: list[Path],
) -> None:
    written = _write(store, root, batch)
    _commit(store, root, batch, horizon, now, written)
    for table, _day, count, path in written:
        rows[table] = rows.get(table, 0) + count
        files.append(path)


def _write(store: EventStore, root: Path, batch: int) -> list[tuple[str, date, int, Path]]:
    """Write the batch's files; return (table, day, rows, path) per file."""
    written: list[tuple[str, date, int, Path]] = []
    with store.transaction() as con:  # one consistent read; the lock keeps batches out
        parts = con.execute(
            "SELECT tbl, day, count(*) FROM archive_plan WHERE batch = ? GROUP BY ALL ORDER BY ALL",
            [batch],
        ).fetchall()
        for table, day, count in parts:
            final = archive_path(root, str(table), day, batch)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.tmp")
            raw = RAW_TABLES[str(table)]
            literal = str(tmp).replace("'", "''")  # COPY takes no parameters
            con.execute(
                f"COPY (SELECT {raw.columns} FROM {table} AS t JOIN archive_plan AS p "
                f"ON p.tbl = '{table}' AND p.key = {raw.key} "
                f"WHERE p.batch = {batch} AND p.day = DATE '{day.isoformat()}' "
                f"ORDER BY {raw.key}) TO '{literal}' (FORMAT parquet)"
            )
            publish(tmp, final)
            written.append((str(table), day, int(count), final))
    return written


def archive_path(root: Path, table: str, day: date, batch: int) -> Path:
    """Where batch ``batch`` keeps ``table``'s rows of ``day``."""
    return root / table / f"day={day.isoformat()}" / f"part-{batch:06d}.parquet"


def _commit(
    store: EventStore,
    root: Path,
    batch: int,
    horizon: datetime,
    now: datetime,
    written: list[tuple[str, date, int, Path]],
) -> None:
    with store.transaction() as con:
        # Fold every event in first: the archived lists' judgments and counts must be final.
        rebuild_derived(con, store.settings.derived, now=now, online_since=horizon)
        for table, day, count, path in written:
            ts = RAW_TABLES[table].ts
            con.execute(
                f"INSERT INTO archive_files (path, tbl, day, batch, rows, min_ts, max_ts) "
                f"SELECT ?, ?, ?, ?, ?, min(t.{ts}), max(t.{ts}) FROM {table} AS t "
                f"JOIN archive_plan AS p ON p.tbl = ? AND p.key = {RAW_TABLES[table].key} "
                "WHERE p.batch = ? AND p.day = ?",
                [path.relative_to(root).as_posix(), table, day, batch, count, table, batch, day],
            )
        _fold_archived(con, batch)
        for table, raw in RAW_TABLES.items():
            con.execute(
                f"DELETE FROM {table} AS t WHERE {raw.key} IN "
                "(SELECT key FROM archive_plan WHERE tbl = ? AND batch = ?)",
                [table, batch],
            )
        con.execute("DELETE FROM archive_plan WHERE batch = ?", [batch])


def _fold_archived(con: duckdb.DuckDBPyConnection, batch: int) -> None:
    """Keep what later refreshes and snapshots need of the lists leaving the hot store."""
    planned = (
        "FROM queries AS q JOIN archive_plan AS p ON p.tbl = 'queries' AND p.key = q.query_id "
        "AND p.batch = $batch"
    )
    con.execute(
        "INSERT INTO session_archived SELECT coalesce(q.session_id, q.query_id), count(*) "
        f"{planned} GROUP BY 1 ON CONFLICT (session) DO UPDATE SET lists = lists + excluded.lists",
        {"batch": batch},
    )
    con.execute(
        "INSERT INTO archived_offsets SELECT source_partition, max(source_offset) FROM ("
        f" SELECT q.source_partition, q.source_offset {planned} UNION ALL"
        " SELECT i.source_partition, i.source_offset FROM interactions AS i"
        " JOIN archive_plan AS p ON p.tbl = 'interactions' AND p.key = i.event_id"
        " AND p.batch = $batch)"
        " WHERE source_partition IS NOT NULL GROUP BY 1"
        " ON CONFLICT (source_partition) DO UPDATE"
        " SET max_offset = greatest(max_offset, excluded.max_offset)",
        {"batch": batch},
    )
    for table in ("list_facts", "list_outcomes", "capped_lists"):
        con.execute(
            f"DELETE FROM {table} WHERE query_id IN "
            "(SELECT key FROM archive_plan WHERE tbl = 'queries' AND batch = ?)",
            [batch],
        )
