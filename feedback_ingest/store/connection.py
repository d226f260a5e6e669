"""Opening the DuckDB file for writing, and the error when another process holds it."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from feedback_ingest.store.errors import StoreError, StoreLockedError


def connect_writer(path: Path) -> duckdb.DuckDBPyConnection:
    """Open ``path`` read-write; translate DuckDB's file-lock error into :class:`StoreLockedError`.

    DuckDB takes an exclusive OS lock on the file for a read-write connection and fails at
    once (no waiting) when another process holds it; its message names that process's PID.
    """
    try:
        return duckdb.connect(str(path))
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise StoreError(
                f"cannot open the event store {path}: {exc}; check that its directory is "
                "writable and the file is a DuckDB database (move it aside to start a new store)."
            ) from exc
        pid = re.search(r"PID (\d+)", str(exc))
        who = f" (PID {pid[1]}; see `ps -o pid,args -p {pid[1]}`)" if pid else ""
        raise StoreLockedError(
            f"another `flywheel ingest` holds {path} open for writing{who}; DuckDB allows one "
            f"writing process per file. Find it with `fuser -v {path}` or `lsof {path}`, stop it "
            "or let it finish, then retry. To read events while it runs, use the Parquet "
            "snapshots in $FLYWHEEL_HOME/exports/ instead of the DuckDB file."
        ) from exc
