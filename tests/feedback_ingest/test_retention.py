"""Retention: the hot store stays within its bound as days pass, the archive holds every other
event exactly once (a crash at any step included), the training data survives, and online
metrics equal those computed on all the events for the window retention keeps."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from feedback_ingest.store import DerivedSettings, EventStore, StoreSettings, refresh_derived
from feedback_ingest.store import files as files_module
from feedback_ingest.store import retention as retention_module
from feedback_ingest.store.retention import apply_retention, horizon_at
from feedback_ingest.store.snapshot import write_snapshot
from services.ingest_settings import ClickModelSettings, FeedbackCaps
from services.snapshots import Snapshot
from tests.feedback_ingest.builders import act, query
from tests.feedback_ingest.test_incremental import derived_rows
from tests.feedback_ingest.traffic import day_start, traffic

DAYS = 2
SETTINGS = StoreSettings(
    retention_days=DAYS,
    derived=DerivedSettings(
        click_model=ClickModelSettings(
            max_position=16, min_observations=50, min_position_observations=3
        ),
        caps=FeedbackCaps(max_lists_per_session=4, max_client_share=0.3, min_client_lists=5),
    ),
)
TRAINING = ("judgments", "query_product_stats", "training_pairs", "propensities")
ONLINE = ("online_metrics", "online_metrics_by_arm", "interleaving_wins")


def _archived(archive: Path, table: str) -> list[tuple[str, datetime]]:
    """(key, ts) of every row in the archive's files of ``table``."""
    files = sorted(str(p) for p in (archive / table).rglob("*.parquet"))
    if not files:
        return []
    key = "query_id" if table == "queries" else "event_id"
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT {key}, ts FROM read_parquet(?, hive_partitioning = false)", [files]
        ).fetchall()
    return [(str(k), ts) for k, ts in rows]


def _hot(store: EventStore, table: str) -> list[tuple[str, datetime]]:
    key = "query_id" if table == "queries" else "event_id"
    rows = store.con.execute(f"SELECT {key}, ts FROM {table}").fetchall()
    return [(str(k), ts) for k, ts in rows]


def test_the_hot_store_stays_bounded_and_metrics_stay_exact(tmp_path: Path) -> None:
    rng = random.Random(3)
    exports = tmp_path / "exports"
    archive = exports / "archive"
    fed: dict[str, set[str]] = {"queries": set(), "interactions": set()}
    with (
        EventStore(tmp_path / "hot.duckdb", SETTINGS) as store,
        EventStore(tmp_path / "all.duckdb", SETTINGS) as everything,
    ):
        for day in range(6):
            now = day_start(day) + timedelta(hours=23, minutes=50)
            events = traffic(day, 24, seed=2)
            fed["queries"] |= {q.query_id for q in events.queries}
            fed["interactions"] |= {i.event_id for i in events.interactions}
            for batch in events.batches(rng, size=40):
                batch.write(store)
                refresh_derived(store, now=now - timedelta(hours=rng.uniform(0, 12)))
            events.write(everything)
            report = apply_retention(store, exports, now=now)
            horizon = horizon_at(now, DAYS)
            assert report.horizon == horizon
            snapshot = write_snapshot(store, exports, now=now)
            refresh_derived(everything, now=now, online_since=horizon)

            # The bound: no hot list before the horizon, so at most DAYS + 1 days of lists.
            days = store.con.execute("SELECT DISTINCT ts::DATE FROM queries").fetchall()
            assert len(days) <= DAYS + 1
            assert all(d >= horizon.date() for (d,) in days)
            orphans_before = store.con.execute(
                "SELECT count(*) FROM interactions WHERE ts < ? "
                "AND query_id NOT IN (SELECT query_id FROM queries)",
                [horizon],
            ).fetchone()
            assert orphans_before == (0,)
            assert store.con.execute("SELECT count(*) FROM archive_plan").fetchone() == (0,)

            # Every event once: hot or archived, never both, never lost.
            for table, ids in fed.items():
                hot, cold = _hot(store, table), _archived(archive, table)
                stored = Counter(key for key, _ in hot + cold)
                assert set(stored) == ids, table
                assert max(stored.values()) == 1, table
                assert all(ts < horizon for _, ts in cold) or table == "interactions"

            # Training data covers every list; online metrics the window, as on all events.
            got, expected = derived_rows(store), derived_rows(everything)
            for table in TRAINING + ONLINE:
                assert got[table] == expected[table], (day, table)
            assert expected["online_metrics"], "the window has closed lists to measure"

            # The snapshot reads as if nothing had been archived.
            read = Snapshot(snapshot)
            for table, ids in fed.items():
                key = "query_id" if table == "queries" else "event_id"
                assert sorted(r[0] for r in read.fetch(f"SELECT {key} FROM {table}")) == sorted(ids)
            judged = everything.con.execute(
                "SELECT norm_query, product_id, max(grade), max(ts) FROM judgments "
                "GROUP BY ALL ORDER BY ALL"
            ).fetchall()
            assert [(j.norm_query, j.product_id, j.grade, j.last_ts) for j in read.judgments()] == [
                tuple(r) for r in judged
            ]
        assert len(list(archive.glob("queries/day=*"))) == 6 - (DAYS + 1)


def _one_old_day(store: EventStore) -> tuple[datetime, set[str]]:
    """Two clicked lists eight days ago and one today; returns now and the interactions' ids."""
    clicks = [act("old1", "click", "b", 2), act("old2", "click", "c", 1, minute=31)]
    store.write_batch(
        [
            query("old1", "drill", ["a", "b"]),
            query("old2", "saw", ["c", "d"], minute=30),
            query("new", "drill", ["a", "b"], minute=8 * 24 * 60),
        ],
        clicks,
    )
    return day_start(0) + timedelta(days=8, hours=12), {c.event_id for c in clicks}


def _everything_once(store: EventStore, archive: Path, clicks: set[str]) -> None:
    for table, ids in (("queries", {"old1", "old2", "new"}), ("interactions", clicks)):
        stored = Counter(key for key, _ in _hot(store, table) + _archived(archive, table))
        assert set(stored) == ids and max(stored.values()) == 1, table
    assert [k for k, _ in _hot(store, "queries")] == ["new"]


@pytest.mark.parametrize("crash", ["before_commit", "after_first_file"])
def test_a_crash_mid_archive_loses_and_duplicates_nothing(
    tmp_path: Path, crash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports = tmp_path / "exports"
    archive = exports / "archive"
    with EventStore(tmp_path / "events.duckdb", StoreSettings(retention_days=DAYS)) as store:
        now, clicks = _one_old_day(store)
        refresh_derived(store, now=now)
        judged = derived_rows(store)["judgments"]
        if crash == "before_commit":  # every file renamed into place, the delete not committed

            def fail_commit(*args: object) -> None:
                raise OSError("killed")

            monkeypatch.setattr(retention_module, "_commit", fail_commit)
        else:  # killed while writing the second file: one final, one temporary
            real = files_module.publish
            calls = iter(range(100))

            def fail_second(tmp: Path, final: Path) -> None:
                if next(calls) == 1:
                    raise OSError("killed")
                real(tmp, final)

            monkeypatch.setattr(retention_module, "publish", fail_second)
        with pytest.raises(OSError, match="killed"):
            apply_retention(store, exports, now=now)
        assert list(archive.rglob("*.parquet"))  # at least one file reached its final name
        # Until the batch is committed a snapshot names none of its files: nothing twice.
        read = Snapshot(write_snapshot(store, exports, now=now))
        assert read.fetch("SELECT count(*) FROM queries") == [(3,)]
        monkeypatch.undo()
        report = apply_retention(store, exports, now=now)  # finishes the batch, plans nothing new
        assert report.rows["queries"] == 2
        _everything_once(store, archive, clicks)
        assert derived_rows(store)["judgments"] == judged  # the training data stays
        read = Snapshot(write_snapshot(store, exports, now=now))
        assert read.fetch("SELECT count(*) FROM queries") == [(3,)]
        assert read.fetch("SELECT count(*) FROM interactions") == [(2,)]
        assert apply_retention(store, exports, now=now).rows == {}  # idempotent


def test_a_late_click_on_an_archived_list_is_archived_later(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    with EventStore(tmp_path / "events.duckdb", StoreSettings(retention_days=DAYS)) as store:
        now, _ = _one_old_day(store)
        apply_retention(store, exports, now=now)
        judged = derived_rows(store)["judgments"]
        late = act("old1", "purchase", "b", 2, minute=8 * 24 * 60)  # today
        store.write_batch([], [late])
        refresh_derived(store, now=now)
        assert derived_rows(store)["judgments"] == judged  # an archived list no longer changes
        apply_retention(store, exports, now=now)
        assert _hot(store, "interactions") == [(late.event_id, late.timestamp)]
        apply_retention(store, exports, now=now + timedelta(days=DAYS + 1))
        assert _hot(store, "interactions") == []
        assert late.event_id in {k for k, _ in _archived(exports / "archive", "interactions")}


def test_retention_off_keeps_everything(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    with EventStore(tmp_path / "events.duckdb", StoreSettings(retention_days=0)) as store:
        now, _ = _one_old_day(store)
        report = apply_retention(store, exports, now=now)
        assert report.horizon is None and report.rows == {}
        assert store.con.execute("SELECT count(*) FROM queries").fetchone() == (3,)
        assert not (exports / "archive").exists()
