"""EventStore.write_batch: idempotent inserts, offsets in the same transaction, one writer."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from feedback_ingest.store import (
    DeadLetter,
    EventStore,
    Sourced,
    StoreError,
    StoreLockedError,
    StoreSettings,
)
from tests.feedback_ingest.builders import act, open_store, query

TOPIC = "flywheel.events"


def _counts(store: EventStore) -> tuple[int, int, int]:
    row = store.con.execute(
        "SELECT (SELECT count(*) FROM queries), (SELECT count(*) FROM interactions), "
        "(SELECT count(*) FROM dead_letters)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_repeated_events_are_ignored_and_counted(store: EventStore) -> None:
    q1, q2 = query("q1", "Red Shoes", ["p1", "p2"]), query("q2", "hat", ["h1"])
    click = act("q1", "click", "p1", 1)
    first = store.write_batch([q1], [click, click], offsets={(TOPIC, 0): 3})
    assert (first.inserted, first.duplicates) == (2, 1)  # the in-batch repeat counts too
    again = store.write_batch([q1, q2], [click], offsets={(TOPIC, 0): 6})
    assert (again.inserted, again.duplicates) == (1, 2)
    assert _counts(store) == (2, 1, 0)
    stored = store.con.execute("SELECT norm_query, results FROM queries WHERE query_id = 'q1'")
    assert stored.fetchone() == ("red shoes", ["p1", "p2"])


def test_offsets_and_sources_are_stored(store: EventStore) -> None:
    assert store.stored_offsets(TOPIC) == {}
    store.write_batch(
        [Sourced(query("q1", "a", ["p"]), partition=2, offset=40)],
        offsets={(TOPIC, 2): 41, (TOPIC, 0): 7, ("other", 0): 1},
    )
    store.write_batch(offsets={(TOPIC, 2): 45})
    assert store.stored_offsets(TOPIC) == {0: 7, 2: 45}
    row = store.con.execute("SELECT source_partition, source_offset FROM queries").fetchone()
    assert row == (2, 40)


def test_dead_letters_are_truncated_and_idempotent(tmp_path: Path) -> None:
    for store in open_store(tmp_path / "e.duckdb", StoreSettings(dead_letter_raw_max_bytes=4)):
        letter = DeadLetter(TOPIC, 0, 9, "invalid_json", "not JSON: {", raw=b"{not json")
        assert store.write_batch(dead_letters=[letter]).dead_letters == 1
        assert store.write_batch(dead_letters=[letter]).dead_letters == 0  # redelivered
        row = store.con.execute("SELECT reason_code, raw, raw_truncated FROM dead_letters")
        assert row.fetchall() == [("invalid_json", b"{not", True)]


def test_a_failing_batch_leaves_nothing_behind(store: EventStore) -> None:
    store.write_batch([query("q0", "a", ["p"])], offsets={(TOPIC, 0): 1})
    batch = ([query("q1", "b", ["p"])], [act("q1", "click", "p", 1)])
    letter = DeadLetter(TOPIC, 0, 3, "invalid_field", "bad position")
    # The offsets upsert comes last; a CHECK violation there must undo the inserts before it.
    with pytest.raises(StoreError, match="Nothing of the batch was stored"):
        store.write_batch(*batch, [letter], offsets={(TOPIC, 0): -1})
    assert _counts(store) == (1, 0, 0)
    assert store.stored_offsets(TOPIC) == {0: 1}


def test_a_crash_before_commit_leaves_nothing_behind(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(con: duckdb.DuckDBPyConnection, offsets: object) -> None:
        raise KeyboardInterrupt  # e.g. the process is told to stop between statements

    monkeypatch.setattr(EventStore, "_upsert_offsets", staticmethod(crash))
    with pytest.raises(KeyboardInterrupt):
        store.write_batch([query("q1", "b", ["p"])], offsets={(TOPIC, 0): 5})
    monkeypatch.undo()
    assert _counts(store) == (0, 0, 0)
    assert store.stored_offsets(TOPIC) == {}
    # The store is usable afterwards and the same batch goes in whole.
    assert store.write_batch([query("q1", "b", ["p"])], offsets={(TOPIC, 0): 5}).inserted == 1


def test_a_second_writer_process_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from feedback_ingest.store import EventStore; "
            "s = EventStore(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        with pytest.raises(StoreLockedError) as caught:
            EventStore(path)
        assert time.perf_counter() - started < 2.0
        message = str(caught.value)
        assert "another `flywheel ingest` holds" in message
        assert f"PID {holder.pid}" in message
        assert "fuser" in message
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)


def test_the_same_file_twice_in_one_process_is_refused(store: EventStore) -> None:
    with pytest.raises(StoreLockedError, match="already has"):
        EventStore(store.path)


def test_five_thousand_events_write_well_under_a_second(store: EventStore) -> None:
    queries = [
        Sourced(query(f"q{i}", f"query {i % 97}", [f"p{i}-{k}" for k in range(10)]), 0, i)
        for i in range(1000)
    ]
    actions = [
        Sourced(act(f"q{i}", "impression" if k else "click", f"p{i}-{k}", k + 1), 0, 1000 + i)
        for i in range(1000)
        for k in range(4)
    ]
    store.write_batch(queries[:1], actions[:1])  # warm-up: first insert builds the indexes
    started = time.perf_counter()
    result = store.write_batch(queries, actions, offsets={(TOPIC, 0): 5000})
    elapsed = time.perf_counter() - started
    assert (result.inserted, result.duplicates) == (4998, 2)
    assert elapsed < 0.5, f"5,000 events took {elapsed:.3f} s"
