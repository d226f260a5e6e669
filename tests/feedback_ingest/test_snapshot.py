"""Parquet snapshots: complete or absent, described by a manifest, pointed to, pruned, and
written incrementally (a day whose rows did not change is not written again)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feedback_ingest.store import EventStore, Sourced, latest_snapshot, write_snapshot
from feedback_ingest.store import snapshot as snapshot_module
from feedback_ingest.store.migrations import load_migrations
from services.snapshots import SNAPSHOT_TABLES, Snapshot, Table, read_manifest, table_files
from tests.feedback_ingest.builders import act, at, query


def _fill(store: EventStore) -> None:
    store.write_batch(
        [
            Sourced(query("q1", "red shoes", ["p1", "p2", "p3"]), 0, 10),
            Sourced(query("q2", "hat", ["h1", "h2"], minute=3), 1, 4),
        ],
        [Sourced(act("q1", "click", "p2", 2), 0, 11), Sourced(act("q2", "click", "h1", 1), 1, 5)],
        offsets={("flywheel.events", 0): 12, ("flywheel.events", 1): 6},
    )


def test_snapshot_files_manifest_and_pointer(store: EventStore, tmp_path: Path) -> None:
    _fill(store)
    exports = tmp_path / "exports"
    folder = write_snapshot(store, exports, now=at(60))
    assert folder.parent == exports
    assert folder.name.startswith("snapshot-")
    assert (exports / "latest").read_text(encoding="utf-8").strip() == folder.name
    assert latest_snapshot(exports) == folder
    # No temporary folder or file left; the snapshot's files are shared under parts/.
    assert sorted(p.name for p in exports.iterdir()) == ["latest", "parts", folder.name]
    assert not [p for p in exports.rglob("*") if p.name.endswith(".tmp")]
    manifest = read_manifest(folder)
    assert manifest["format"] == 2
    assert set(manifest["tables"]) == set(SNAPSHOT_TABLES)
    for table in SNAPSHOT_TABLES:
        files = table_files(folder, table, manifest)
        rows = sum(pq.read_table(f).num_rows for f in files)
        assert rows == manifest["tables"][table.value]["rows"], table
    rows = {name: entry["rows"] for name, entry in manifest["tables"].items()}
    # q1: p1 skipped above p2's click (0), p2 (1); q2: h1 (1), nothing above it.
    assert rows["queries"] == 2
    assert rows["interactions"] == 2
    assert rows["judgments"] == 3
    assert rows["training_pairs"] == 1
    assert rows["online_metrics"] == 2
    assert manifest["next_offsets"] == {"flywheel.events": {"0": 12, "1": 6}}
    assert manifest["max_source_offsets"] == {"0": 11, "1": 5}
    assert manifest["schema_version"] == max(m.version for m in load_migrations())
    assert manifest["data_window"]["first_query_ts"] == "2024-05-01T10:00:00+00:00"
    assert manifest["propensity_method"] == "fallback"


def test_only_the_newest_snapshots_are_kept(store: EventStore, tmp_path: Path) -> None:
    _fill(store)
    exports = tmp_path / "exports"
    made = [write_snapshot(store, exports, keep=2, now=at(60)) for _ in range(3)]
    remaining = sorted(p.name for p in exports.glob("snapshot-*"))
    assert remaining == [made[1].name, made[2].name]
    assert latest_snapshot(exports) == made[2]


def test_a_failed_snapshot_leaves_the_previous_one(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(store)
    exports = tmp_path / "exports"
    first = write_snapshot(store, exports, now=at(60))

    def broken(*args: object) -> dict[str, object]:
        raise OSError("disk full")

    monkeypatch.setattr(snapshot_module, "_export", broken)
    with pytest.raises(OSError, match="disk full"):
        write_snapshot(store, exports, now=at(60))
    assert sorted(p.name for p in exports.iterdir()) == ["latest", "parts", first.name]
    assert latest_snapshot(exports) == first


def test_latest_without_pointer_and_incomplete_folders(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    assert latest_snapshot(exports) is None
    older = exports / "snapshot-20240101T000000000000Z"
    newer = exports / "snapshot-20240102T000000000000Z"
    incomplete = exports / "snapshot-20240103T000000000000Z"  # no manifest: never finished
    for folder in (older, newer, incomplete):
        folder.mkdir(parents=True)
    for folder in (older, newer):
        (folder / "manifest.json").write_text(json.dumps({"tables": {}}), encoding="utf-8")
    assert latest_snapshot(exports) == newer
    (exports / "latest").write_text(older.name + "\n", encoding="utf-8")
    assert latest_snapshot(exports) == older


def _parts(folder: Path, table: Table) -> set[str]:
    return {p["path"] for p in read_manifest(folder)["tables"][table.value]["parts"]}


def test_only_days_that_changed_are_written_again(store: EventStore, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    store.write_batch(
        [query("q1", "drill", ["a", "b"]), query("q2", "saw", ["c"], minute=24 * 60)],
        [act("q1", "click", "b", 2), act("q2", "click", "c", 1, minute=24 * 60 + 1)],
    )
    first = write_snapshot(store, exports, now=at(3 * 24 * 60))
    assert [p.split("/")[2] for p in sorted(_parts(first, Table.QUERIES))] == [
        "day=2024-05-01",
        "day=2024-05-02",
    ]
    written = {p: p.stat().st_mtime_ns for p in (exports / "parts").rglob("*.parquet")}
    # A click on the second day's list: that day's interactions and judgments change.
    store.write_batch([], [act("q2", "purchase", "c", 1, minute=24 * 60 + 2)])
    second = write_snapshot(store, exports, now=at(3 * 24 * 60))
    assert _parts(second, Table.QUERIES) == _parts(first, Table.QUERIES)
    for table in (Table.INTERACTIONS, Table.JUDGMENTS):
        kept, new = _parts(first, table) & _parts(second, table), _parts(second, table)
        assert [p.split("/")[2] for p in kept] == ["day=2024-05-01"], table
        assert [p.split("/")[2] for p in new - kept] == ["day=2024-05-02"], table
    for path, mtime in written.items():  # nothing a snapshot still names was rewritten
        if path.relative_to(exports).as_posix() in _parts(second, Table.QUERIES):
            assert path.stat().st_mtime_ns == mtime
    judged = Snapshot(second).fetch(
        "SELECT query_id, product_id, grade FROM judgments ORDER BY ALL"
    )
    assert judged == [("q1", "a", 0), ("q1", "b", 1), ("q2", "c", 3)]


def test_files_no_kept_snapshot_names_are_deleted(store: EventStore, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    _fill(store)
    first = write_snapshot(store, exports, keep=1, now=at(60))
    store.write_batch([], [act("q1", "purchase", "p1", 1)])
    second = write_snapshot(store, exports, keep=1, now=at(60))
    assert not first.exists()
    on_disk = {p.relative_to(exports).as_posix() for p in (exports / "parts").rglob("*.parquet")}
    named = {p for t in SNAPSHOT_TABLES for p in _parts(second, t)}
    assert on_disk == named


def test_format_1_snapshots_are_still_read(tmp_path: Path) -> None:
    folder = tmp_path / "exports" / "snapshot-20240101T000000000000Z"
    folder.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "norm_query": ["drill"],
                "positive_id": ["a"],
                "negative_id": ["b"],
                "grade": [1],
                "weight": [2.0],
            }
        ),
        folder / "training_pairs.parquet",
    )
    (folder / "manifest.json").write_text(
        json.dumps({"tables": {"training_pairs": {"file": "training_pairs.parquet", "rows": 1}}}),
        encoding="utf-8",
    )
    pairs = Snapshot(folder).training_pairs()
    assert [(p.positive_id, p.negative_id, p.weight) for p in pairs] == [("a", "b", 2.0)]
