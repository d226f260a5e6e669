"""Schema migrations: ordered, recorded, idempotent, refused when the file is newer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from feedback_ingest.store import EventStore, StoreSchemaError, refresh_derived
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


def test_a_store_from_before_incremental_derivation_is_derived_again(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    migrate(con, load_migrations()[:8])  # the schema of the full-rebuild code
    con.execute(
        "INSERT INTO queries (query_id, ts, user_query, norm_query, model_version, arm, mode, "
        "page, results) VALUES ('q1', TIMESTAMPTZ '2024-05-01 10:00:00+00', 'Drill', 'drill', "
        "'v1', 'production', 'hybrid', 1, ['a', 'b'])"
    )
    con.execute(
        "INSERT INTO interactions (event_id, query_id, action, product_id, position, ts) "
        "VALUES ('e1', 'q1', 'click', 'b', 2, TIMESTAMPTZ '2024-05-01 10:01:00+00')"
    )
    con.execute("INSERT INTO judgments VALUES ('stale', 'x', 'y', 1, 1, 'v1', 'production', now())")
    con.close()
    with EventStore(path) as store:  # migrates to the newest version
        seqs = store.con.execute(
            "SELECT (SELECT min(seq) FROM queries), (SELECT min(seq) FROM interactions)"
        ).fetchone()
        assert seqs is not None and None not in seqs  # the old rows are numbered
        report = refresh_derived(store, now=datetime(2024, 5, 2, tzinfo=UTC))
        assert report.lists_derived == 1
        judged = store.con.execute(
            "SELECT query_id, product_id, grade FROM judgments ORDER BY ALL"
        ).fetchall()
        assert judged == [("q1", "a", 0), ("q1", "b", 1)]  # the old full rebuild's rows are gone
