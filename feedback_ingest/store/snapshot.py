"""Parquet snapshots of the event store for the retrainer (which never opens the DuckDB file).

A snapshot is a manifest listing, per table, the Parquet files whose union is the table
(layout in :mod:`services.snapshots`); the files are shared between snapshots and a snapshot
writes only those whose rows changed (:mod:`.parts`). Raw events past the retention horizon
are the archive's files.

The manifest is written into a hidden temporary folder, then renamed into place
(``exports/snapshot-<UTC timestamp>/``), so a reader sees a whole snapshot or none. The
``latest`` file names the newest folder and is replaced atomically. The last ``keep``
snapshots are kept; older ones, and the files no kept snapshot names, are deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from feedback_ingest.store.derived import DerivedReport, rebuild_derived
from feedback_ingest.store.files import fsync_dir, write_atomic
from feedback_ingest.store.migrations import schema_version
from feedback_ingest.store.parts import export_tables
from feedback_ingest.store.state import read_state
from feedback_ingest.store.writer import EventStore
from services.snapshots import (
    LATEST,
    MANIFEST,
    PARTS,
    PREFIX,
    latest_snapshot,
    read_manifest,
    snapshot_folders,
)

logger = logging.getLogger(__name__)

FORMAT = 2


def write_snapshot(
    store: EventStore,
    exports_dir: Path,
    *,
    keep: int | None = None,
    now: datetime | None = None,
) -> Path:
    """Bring the derived tables up to date and export them with the events; return the new
    snapshot folder.

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
        previous = _previous(exports_dir)
        with store.transaction() as con:
            report = rebuild_derived(con, store.settings.derived, now=now)
            archive = store.settings.archive_root(exports_dir)
            manifest = _export(con, exports_dir, archive, name, created, report, previous)
        write_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        final = exports_dir / name
        tmp.rename(final)
        fsync_dir(exports_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(exports_dir / LATEST, name + "\n")
    _prune(exports_dir, keep or store.settings.keep_snapshots, protect=name)
    rows = {table: entry["rows"] for table, entry in manifest["tables"].items()}
    logger.info("wrote snapshot %s (%s)", final, rows)
    return final


def _previous(exports_dir: Path) -> dict[str, Any] | None:
    folder = latest_snapshot(exports_dir)
    return read_manifest(folder) if folder is not None else None


def _export(
    con: duckdb.DuckDBPyConnection,
    exports_dir: Path,
    archive: Path,
    name: str,
    created: datetime,
    report: DerivedReport,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    state = read_state(con)
    version = schema_version(con)
    if previous is not None and (
        previous.get("format") != FORMAT
        or previous.get("store_id") != state.store_id
        or previous.get("schema_version") != version
    ):
        previous = None  # another store, layout or schema: reuse nothing it lists
    tables = export_tables(con, exports_dir, archive, version, previous)
    batch = con.execute("SELECT coalesce(max(batch), 0) FROM archive_files").fetchone()
    return {
        "format": FORMAT,
        "name": name,
        "created_at": created.isoformat(),
        "schema_version": version,
        "store_id": state.store_id,
        "archive_batch": int(batch[0]) if batch else 0,
        "derived_at": report.now.isoformat(),
        "propensity_method": report.propensity_method,
        "tables": tables,
        "next_offsets": _next_offsets(con),
        "max_source_offsets": _max_source_offsets(con),
        "data_window": _data_window(con),
    }


def _next_offsets(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    offsets: dict[str, dict[str, int]] = {}
    for topic, partition, offset in con.execute(
        "SELECT topic, partition, next_offset FROM consumer_offsets ORDER BY ALL"
    ).fetchall():
        offsets.setdefault(str(topic), {})[str(partition)] = int(offset)
    return offsets


def _max_source_offsets(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute(
        "SELECT source_partition, max(source_offset) FROM ("
        " SELECT source_partition, source_offset FROM queries UNION ALL"
        " SELECT source_partition, source_offset FROM interactions UNION ALL"
        " SELECT source_partition, max_offset FROM archived_offsets)"
        " WHERE source_partition IS NOT NULL GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    return {str(partition): int(offset) for partition, offset in rows}


def _data_window(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    window = con.execute(
        "SELECT min(first), max(last) FROM ("
        " SELECT min(ts) AS first, max(ts) AS last FROM queries UNION ALL"
        " SELECT min(min_ts), max(max_ts) FROM archive_files WHERE tbl = 'queries')"
    ).fetchone()
    first, last = window if window else (None, None)
    return {
        "first_query_ts": first.isoformat() if first else None,
        "last_query_ts": last.isoformat() if last else None,
    }


def _prune(exports_dir: Path, keep: int, *, protect: str) -> None:
    """Delete snapshots beyond the newest ``keep``, then the files no kept snapshot names."""
    for old in snapshot_folders(exports_dir)[:-keep]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
            logger.info("deleted old snapshot %s (keeping %d)", old, keep)
    named: set[Path] = set()
    for folder in snapshot_folders(exports_dir):
        if (folder / MANIFEST).is_file():
            for entry in read_manifest(folder).get("tables", {}).values():
                named.update(
                    (exports_dir / str(p["path"])).resolve() for p in entry.get("parts", ())
                )
    parts = exports_dir / PARTS
    for path in sorted(parts.rglob("*")) if parts.is_dir() else ():
        if path.is_file() and path.resolve() not in named:  # unnamed, or a crashed write's
            path.unlink(missing_ok=True)
    for folder in sorted(parts.rglob("*"), reverse=True) if parts.is_dir() else ():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
