"""Incremental derivation gives exactly what deriving everything at once gives.

One store is refreshed after every batch (events out of order, windows closing as time
passes); another takes all events and derives once; the first is then derived in full again.
All three must hold the same rows in every derived table, to the last bit of every float.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from feedback_ingest.store import (
    DerivedSettings,
    EventStore,
    StoreSettings,
    refresh_derived,
)
from feedback_ingest.store.derived import DERIVED_TABLES
from services.ingest_settings import ClickModelSettings, FeedbackCaps
from tests.feedback_ingest.builders import act, at, query
from tests.feedback_ingest.traffic import day_start, traffic

SETTINGS = StoreSettings(
    derived=DerivedSettings(
        # Low thresholds, so the click model runs EM rather than the fallback curve.
        click_model=ClickModelSettings(
            max_position=16, min_observations=50, min_position_observations=3
        ),
        ips_max_weight=5.0,
        max_pairs_per_query=4,
        caps=FeedbackCaps(max_lists_per_session=4, max_client_share=0.3, min_client_lists=5),
    )
)


def derived_rows(store: EventStore) -> dict[str, list[tuple[object, ...]]]:
    """Every derived table's rows, sorted (the fit time of propensities left out)."""
    rows: dict[str, list[tuple[object, ...]]] = {}
    for table in DERIVED_TABLES:
        columns = "* EXCLUDE (estimated_at)" if table == "propensities" else "*"
        rows[table] = [
            tuple(r)
            for r in store.con.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()
        ]
    return rows


def test_refreshing_after_every_batch_equals_deriving_once(tmp_path: Path) -> None:
    rng = random.Random(7)
    days = [traffic(day, 40, seed=1) for day in range(3)]
    end = day_start(3) + timedelta(hours=1)
    with (
        EventStore(tmp_path / "incremental.duckdb", SETTINGS) as incremental,
        EventStore(tmp_path / "once.duckdb", SETTINGS) as once,
    ):
        refreshes = []
        for number, day in enumerate(days):
            for batch in day.batches(rng, size=37):
                batch.write(incremental)
                now = day_start(number) + timedelta(hours=rng.uniform(0, 24))
                refreshes.append(refresh_derived(incremental, now=now))
            day.write(once)
        refreshes.append(refresh_derived(incremental, now=end))  # no new events: windows close
        reference = refresh_derived(once, now=end)
        assert reference.propensity_method in ("em", "mixed")  # the EM path is compared too
        assert all(r.lists_derived < 40 for r in refreshes)  # never every list again
        assert refreshes[-1].lists_derived == 0
        expected = derived_rows(once)
        assert all(expected[t] for t in DERIVED_TABLES), "the log exercises every table"
        assert derived_rows(incremental) == expected
        full = refresh_derived(incremental, now=end, full=True)
        assert full.full and full.lists_derived == 120
        assert derived_rows(incremental) == expected


def test_a_late_list_moves_later_lists_of_its_session_across_the_cap(tmp_path: Path) -> None:
    settings = StoreSettings(derived=DerivedSettings(caps=FeedbackCaps(max_lists_per_session=2)))
    with EventStore(tmp_path / "events.duckdb", settings) as store:
        lists = [query(f"q{i}", "drill", ["a", "b"], minute=10 + i, session="s") for i in range(2)]
        store.write_batch(lists, [act(q.query_id, "click", "a", 1) for q in lists])
        refresh_derived(store, now=at(60))
        assert _judged(store) == ["q0", "q1"]
        # Served before both, delivered after: it takes the first place of the session, so
        # q1 (now third) stops counting and its judgments go.
        early = query("q9", "drill", ["a", "b"], minute=0, session="s")
        store.write_batch([early], [act("q9", "click", "b", 2)])
        report = refresh_derived(store, now=at(60))
        assert report.lists_derived == 1
        assert _judged(store) == ["q0", "q9"]
        counts = store.con.execute(
            "SELECT product_id, impressions, clicks FROM query_product_stats ORDER BY 1"
        ).fetchall()
        assert counts == [("a", 2, 1), ("b", 2, 1)]


def test_changed_settings_derive_every_list_again(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.duckdb") as store:
        store.write_batch(
            [query("q1", "drill", ["a", "b"])], [act("q1", "click", "b", 2, minute=20)]
        )
        refresh_derived(store, now=at(60))
        assert _one(store, "SELECT clicked FROM online_metrics") is True
        narrow = DerivedSettings(attribution_window_s=600)  # the click at minute 20 is late
        report = refresh_derived(store, narrow, now=at(60))
        assert report.full
        assert _one(store, "SELECT clicked FROM online_metrics") is False


def _judged(store: EventStore) -> list[str]:
    rows = store.con.execute("SELECT DISTINCT query_id FROM judgments ORDER BY 1").fetchall()
    return [str(r[0]) for r in rows]


def _one(store: EventStore, sql: str) -> object:
    row = store.con.execute(sql).fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize("table", ["list_facts", "list_outcomes", "capped_lists"])
def test_per_list_rows_are_not_duplicated_by_repeated_refreshes(tmp_path: Path, table: str) -> None:
    with EventStore(tmp_path / "events.duckdb") as store:
        day = traffic(0, 10, seed=3)
        for batch in day.batches(random.Random(1), size=9):
            batch.write(store)
            refresh_derived(store, now=day_start(1))
        key = "query_id, product_id" if table == "list_facts" else "query_id"
        dupes = store.con.execute(
            f"SELECT count(*) FROM (SELECT {key} FROM {table} GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()
        assert dupes == (0,)


def test_an_online_refresh_leaves_the_training_tables_to_the_next_full_one(
    tmp_path: Path,
) -> None:
    with EventStore(tmp_path / "events.duckdb") as store:
        store.write_batch([query("q1", "drill", ["a", "b"])], [act("q1", "click", "b", 2)])
        refresh_derived(store, now=at(60), training=False)
        assert _one(store, "SELECT count(*) FROM online_metrics") == 1
        assert _one(store, "SELECT count(*) FROM training_pairs") == 0  # not derived yet
        refresh_derived(store, now=at(60), training=False)  # still behind, not forgotten
        refresh_derived(store, now=at(60))
        assert _one(store, "SELECT count(*) FROM training_pairs") == 1
