"""Versioned schema migrations for the DuckDB event store.

Migrations are the package-data files ``sql/NNN_name.sql``, applied in version order, each in
its own transaction together with its row in ``schema_migrations(version, name, applied_at)``,
so a file is always at exactly one recorded version. Re-running is a no-op. A file recorded at
a version this code does not know (written by a newer Flywheel) is refused rather than guessed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import duckdb

from feedback_ingest.store.errors import StoreSchemaError

logger = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``sql/<version:03d>_<name>.sql``."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Read the packaged migrations, sorted by version, and check they number 1, 2, 3, …"""
    folder = resources.files("feedback_ingest.store") / "sql"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match and entry.is_file():
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreSchemaError(
            f"migration files in {folder} are numbered {versions}, not 1..{len(found)}; "
            "renumber them so each version appears once and none is skipped."
        )
    return found


def applied_versions(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """Versions recorded in ``schema_migrations`` (empty for a new file)."""
    con.execute(_LEDGER)
    rows = con.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    return {int(version): str(name) for version, name in rows}


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The highest applied migration version, 0 for a new file."""
    return max(applied_versions(con), default=0)


def migrate(
    con: duckdb.DuckDBPyConnection,
    migrations: list[Migration] | None = None,
    *,
    where: str = "the event store",
) -> list[int]:
    """Apply every pending migration in order; return the versions applied (empty: up to date).

    Raises:
        StoreSchemaError: the file was written by newer code, its history differs from these
            migrations, or a migration failed (that migration is rolled back).
    """
    known = load_migrations() if migrations is None else migrations
    by_version = {m.version: m for m in known}
    applied = applied_versions(con)
    newest = max(by_version, default=0)
    unknown = sorted(v for v in applied if v not in by_version)
    if unknown:
        raise StoreSchemaError(
            f"{where} is at schema version {max(applied)} but this Flywheel knows migrations "
            f"only up to {newest}; upgrade Flywheel (pip install -U flywheel-search) to open it, "
            "or point FLYWHEEL_HOME at another directory."
        )
    for version, name in applied.items():
        if by_version[version].name != name:
            raise StoreSchemaError(
                f"{where} recorded migration {version:03d} as '{name}' but this Flywheel calls "
                f"it '{by_version[version].name}'; the file comes from a different branch — "
                "use the Flywheel that created it, or start a new store."
            )
    done: list[int] = []
    for migration in known:
        if migration.version in applied:
            continue
        _apply(con, migration, where)
        done.append(migration.version)
    return done


def _apply(con: duckdb.DuckDBPyConnection, migration: Migration, where: str) -> None:
    label = f"{migration.version:03d}_{migration.name}"
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(migration.sql)
        con.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
            [migration.version, migration.name],
        )
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise StoreSchemaError(
            f"migration {label} failed on {where}: {exc}; the file stays at version "
            f"{migration.version - 1}. Fix the migration or restore the file, then start again."
        ) from exc
    logger.info("applied migration %s to %s", label, where)
