"""The files of a snapshot: each table as Parquet files named by what they hold.

Files live under ``exports/parts/`` (layout in :mod:`services.snapshots`), one per UTC day for
the partitioned tables, named by a digest of the schema version, the table, the day and a
fingerprint of the rows, so a day whose rows did not change is not written again: the file is
already there and the new manifest names it. What a day holds is told cheaply: raw events
never change once stored, so their days are fingerprinted by count and the ``seq`` of their
rows; derived rows by a hash of every column, and judgments only on the days that can have
changed since the previous snapshot (days with hot lists, and days archived since). Raw events
past the retention horizon are the archive's files, as retention committed them.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from feedback_ingest.store.files import publish
from services.snapshots import PARTITIONED, SNAPSHOT_TABLES, Table, part_path

_ORDER = {
    Table.QUERIES: "query_id",
    Table.INTERACTIONS: "event_id",
    Table.JUDGMENTS: "query_id, product_id",
    Table.QUERY_PRODUCT_STATS: "norm_query, product_id",
    Table.TRAINING_PAIRS: "norm_query, positive_id, negative_id",
    Table.PROPENSITIES: "position",
    Table.ONLINE_METRICS: "query_id",
    Table.ONLINE_METRICS_BY_ARM: "model_version, arm",
    Table.INTERLEAVING_WINS: "model_version, control_version",
}
"""Row order inside a file, so the same rows always make the same file."""

_RAW = (Table.QUERIES, Table.INTERACTIONS)
"""Raw event tables: rows never change once stored, and old days are in the archive."""

Part = dict[str, Any]


def export_tables(
    con: duckdb.DuckDBPyConnection,
    exports_dir: Path,
    archive: Path,
    version: int,
    previous: dict[str, Any] | None,
) -> dict[str, dict[str, Any]]:
    """The manifest's ``tables``: per table its row count and files, writing the files that
    are not there yet. ``previous`` is the last snapshot's manifest, if it may be reused (same
    store, layout and schema)."""
    writer = PartWriter(con, exports_dir, version)
    tables: dict[str, dict[str, Any]] = {}
    for table in SNAPSHOT_TABLES:
        if table in _RAW:
            parts = writer.hot_days(table) + _archived(con, table, exports_dir, archive)
        elif table is Table.JUDGMENTS:
            parts = _judgments(con, writer, previous)
        elif table in PARTITIONED:
            parts = writer.days(table)
        else:
            parts = [writer.whole(table)]
        if not parts:  # an empty table still needs a file, for its columns
            parts = [writer.whole(table)]
        tables[table.value] = {"rows": sum(int(p["rows"]) for p in parts), "parts": parts}
    return tables


class PartWriter:
    """Writes a table's files named by a digest of their rows, unless already there."""

    def __init__(self, con: duckdb.DuckDBPyConnection, exports_dir: Path, version: int) -> None:
        self.con = con
        self.exports_dir = exports_dir
        self.version = version

    def hot_days(self, table: Table) -> list[Part]:
        """One file per day of a raw table's hot rows, fingerprinted by their ``seq``."""
        rows = self.con.execute(
            f"SELECT ts::DATE, count(*), bit_xor(hash(seq)) FROM {table} GROUP BY 1 ORDER BY 1"
        ).fetchall()
        return [self._part(table, day, int(n), f"{n}:{h}") for day, n, h in rows]

    def days(self, table: Table, only: list[date] | None = None) -> list[Part]:
        """One file per day of a derived table (of the days in ``only`` when given)."""
        if only == []:
            return []
        where = "" if only is None else "WHERE ts::DATE IN (SELECT unnest($days))"
        rows = self.con.execute(
            f"SELECT ts::DATE, count(*), sum(hash(t)) FROM {table} AS t {where} "
            "GROUP BY 1 ORDER BY 1",
            {} if only is None else {"days": only},
        ).fetchall()
        return [self._part(table, day, int(n), f"{n}:{h}") for day, n, h in rows]

    def whole(self, table: Table) -> Part:
        """The whole table as one file."""
        row = self.con.execute(f"SELECT count(*), sum(hash(t)) FROM {table} AS t").fetchone()
        n, h = row if row else (0, None)
        return self._part(table, None, int(n), f"{n}:{h}")

    def _part(self, table: Table, day: date | None, rows: int, fingerprint: str) -> Part:
        digest = hashlib.sha256(
            f"{self.version}:{table.value}:{day}:{fingerprint}".encode()
        ).hexdigest()[:24]
        path = part_path(self.exports_dir, table, day, digest)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            columns = "* EXCLUDE (seq)" if table in _RAW else "*"
            where = "" if day is None else f"WHERE {_on_day('ts', day)}"
            literal = str(tmp).replace("'", "''")  # COPY takes no parameters
            self.con.execute(
                f"COPY (SELECT {columns} FROM {table} {where} ORDER BY {_ORDER[table]}) "
                f"TO '{literal}' (FORMAT parquet)"
            )
            publish(tmp, path)
        return {
            "path": path.relative_to(self.exports_dir).as_posix(),
            "day": day.isoformat() if day else None,
            "rows": rows,
        }


def _on_day(column: str, day: date) -> str:
    """``column`` falls on UTC ``day`` (a range, so DuckDB can skip row groups by min/max)."""
    return (
        f"{column} >= TIMESTAMPTZ '{day.isoformat()} 00:00:00+00' AND "
        f"{column} < TIMESTAMPTZ '{(day + timedelta(days=1)).isoformat()} 00:00:00+00'"
    )


def _judgments(
    con: duckdb.DuckDBPyConnection, writer: PartWriter, previous: dict[str, Any] | None
) -> list[Part]:
    """Judgments by day. Only lists in the hot store change, so only days with hot lists, and
    those archived since the previous snapshot, are fingerprinted; the other days are the
    previous snapshot's files."""
    if previous is None:
        return writer.days(Table.JUDGMENTS)
    changed = [
        day
        for (day,) in con.execute(
            "SELECT DISTINCT ts::DATE FROM queries UNION "
            "SELECT DISTINCT day FROM archive_files WHERE tbl = 'queries' AND batch > ?",
            [int(previous.get("archive_batch", 0))],
        ).fetchall()
    ]
    kept = [
        part
        for part in previous["tables"][Table.JUDGMENTS.value]["parts"]
        if part["day"] is not None and date.fromisoformat(part["day"]) not in changed
    ]
    parts = kept + writer.days(Table.JUDGMENTS, only=changed)
    return sorted(parts, key=lambda part: str(part["day"]))


def _archived(
    con: duckdb.DuckDBPyConnection, table: Table, exports_dir: Path, archive: Path
) -> list[Part]:
    """The archive's files of a raw table that retention has committed."""
    parts: list[Part] = []
    for path, day, rows in con.execute(
        "SELECT path, day, rows FROM archive_files WHERE tbl = ? ORDER BY day, batch",
        [table.value],
    ).fetchall():
        # Inside the exports folder: named relative to it, so the folder can move; else absolute.
        full, base = (archive / str(path)).resolve(), exports_dir.resolve()
        named = full.relative_to(base) if full.is_relative_to(base) else full
        parts.append({"path": named.as_posix(), "day": day.isoformat(), "rows": int(rows)})
    return parts
