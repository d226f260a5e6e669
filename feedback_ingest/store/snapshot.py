"""Parquet snapshots of the event store for the retrainer (which never opens the DuckDB file).

A snapshot is written into a hidden temporary folder, completed with ``manifest.json``, then
renamed into place (``exports/snapshot-<UTC timestamp>/``), so a reader sees a whole snapshot
or none. The ``latest`` file names the newest folder and is replaced atomically (write a temp
file, fsync, ``os.replace``). The last ``keep`` snapshots are kept; older ones are deleted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from feedback_ingest.store.derived import DerivedReport, rebuild_derived
from feedback_ingest.store.migrations import schema_version
from feedback_ingest.store.writer import EventStore
from services.snapshots import (
    LATEST,
    MANIFEST,
    PREFIX,
    SNAPSHOT_TABLES,
    snapshot_folders,
    table_file,
)

logger = logging.getLogger(__name__)


def write_snapshot(
    store: EventStore,
    exports_dir: Path,
    *,
    keep: int | None = None,
    now: datetime | None = None,
) -> Path:
    """Rebuild the derived tables and export them with the events; return the new folder.

    Everything is read in one transaction, so the files and the manifest's offsets agree.
    """
    exports_dir.mkdir(parents=True, exist_ok=True)
    for stale in exports_dir.glob(f".{PREFIX}*.tmp"):  # left by a crash; one writer holds the DB
        shutil.rmtree(stale, ignore_errors=True)
    created = datetime.now(UTC)
    name = f"{PREFIX}{created:%Y%m%dT%H%M%S%fZ}"
    tmp = exports_dir / f".{name}.tmp"
    tmp.mkdir()
    try:
        with store.transaction() as con:
            report = rebuild_derived(con, store.settings.derived, now=now)
            manifest = _export(con, tmp, name, created, report)
        _write_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        final = exports_dir / name
        tmp.rename(final)
        _fsync_dir(exports_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_atomic(exports_dir / LATEST, name + "\n")
    _prune(exports_dir, keep or store.settings.keep_snapshots, protect=name)
    logger.info("wrote snapshot %s (%s)", final, manifest["tables"])
    return final


def _export(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    name: str,
    created: datetime,
    report: DerivedReport,
) -> dict[str, Any]:
    tables: dict[str, dict[str, Any]] = {}
    for table in SNAPSHOT_TABLES:
        target = table_file(folder, table)
        literal = str(target).replace("'", "''")  # COPY takes no parameters
        con.execute(f"COPY (SELECT * FROM {table}) TO '{literal}' (FORMAT parquet)")
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        tables[table.value] = {"file": target.name, "rows": int(row[0]) if row else 0}
    next_offsets: dict[str, dict[str, int]] = {}
    for topic, partition, offset in con.execute(
        "SELECT topic, partition, next_offset FROM consumer_offsets ORDER BY ALL"
    ).fetchall():
        next_offsets.setdefault(str(topic), {})[str(partition)] = int(offset)
    max_source = con.execute(
        "SELECT source_partition, max(source_offset) FROM ("
        " SELECT source_partition, source_offset FROM queries UNION ALL"
        " SELECT source_partition, source_offset FROM interactions)"
        " WHERE source_partition IS NOT NULL GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    window = con.execute("SELECT min(ts), max(ts) FROM queries").fetchone()
    first, last = window if window else (None, None)
    return {
        "format": 1,
        "name": name,
        "created_at": created.isoformat(),
        "schema_version": schema_version(con),
        "derived_at": report.now.isoformat(),
        "propensity_method": report.propensity_method,
        "tables": tables,
        "next_offsets": next_offsets,
        "max_source_offsets": {str(p): int(o) for p, o in max_source},
        "data_window": {
            "first_query_ts": first.isoformat() if first else None,
            "last_query_ts": last.isoformat() if last else None,
        },
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)  # os.replace: atomic on POSIX
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(exports_dir: Path, keep: int, *, protect: str) -> None:
    for old in snapshot_folders(exports_dir)[:-keep]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
            logger.info("deleted old snapshot %s (keeping %d)", old, keep)
