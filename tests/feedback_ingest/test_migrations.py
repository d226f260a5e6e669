"""Schema migrations: ordered, recorded, idempotent, refused when the file is newer."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from feedback_ingest.store import EventStore, StoreSchemaError
from feedback_ingest.store.migrations import Migration, load_migrations, migrate, schema_version


def test_new_file_gets_every_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    with EventStore(path) as store:
        rows = store.con.execute("SELECT version, name FROM schema_migrations").fetchall()
        tables = {r[0] for r in store.con.execute("SHOW TABLES").fetchall()}
    expected = [(m.version, m.name) for m in load_migrations()]
    assert sorted(rows) == expected
    assert expected[0] == (1, "events")
    assert {"queries", "interactions", "dead_letters", "consumer_offsets"} <= tables
    assert {"judgments", "propensities", "training_pairs", "online_metrics"} <= tables
    with EventStore(path) as again:  # reopening applies nothing
        assert migrate(again.con) == []
        assert again.con.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
            len(expected),
        )


def test_file_from_newer_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    EventStore(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'future')")
    con.close()
    with pytest.raises(StoreSchemaError, match=r"schema version 99.*upgrade Flywheel"):
        EventStore(path)
    with pytest.raises(StoreSchemaError):  # the failed open released the file: same error again
        EventStore(path)


def test_history_from_another_branch_is_refused() -> None:
    con = duckdb.connect()
    migrate(con, [Migration(1, "events", "CREATE TABLE a (x INT)")])
    with pytest.raises(StoreSchemaError, match="different branch"):
        migrate(con, [Migration(1, "other", "CREATE TABLE a (x INT)")])


def test_failed_migration_rolls_back_and_keeps_the_version() -> None:
    con = duckdb.connect()
    good = Migration(1, "first", "CREATE TABLE a (x INT)")
    bad = Migration(2, "broken", "CREATE TABLE b (x INT); SELECT * FROM missing_table")
    with pytest.raises(StoreSchemaError, match=r"(?s)002_broken failed.*stays at version 1"):
        migrate(con, [good, bad])
    assert schema_version(con) == 1
    tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    assert "a" in tables
    assert "b" not in tables  # the broken migration's first statement was rolled back
