"""Parquet snapshots: complete or absent, described by a manifest, pointed to, pruned."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from feedback_ingest.store import EventStore, Sourced, latest_snapshot, write_snapshot
from feedback_ingest.store import snapshot as snapshot_module
from feedback_ingest.store.snapshot import SNAPSHOT_TABLES
from services.snapshots import read_manifest
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
    assert sorted(p.name for p in exports.iterdir()) == ["latest", folder.name]  # no temp left
    manifest = read_manifest(folder)
    assert set(manifest["tables"]) == set(SNAPSHOT_TABLES)
    for name, entry in manifest["tables"].items():
        assert pq.read_table(folder / entry["file"]).num_rows == entry["rows"], name
    rows = {name: entry["rows"] for name, entry in manifest["tables"].items()}
    # q1: p1 skipped above p2's click (0), p2 (1); q2: h1 (1), nothing above it.
    assert rows["queries"] == 2
    assert rows["interactions"] == 2
    assert rows["judgments"] == 3
    assert rows["training_pairs"] == 1
    assert rows["online_metrics"] == 2
    assert manifest["next_offsets"] == {"flywheel.events": {"0": 12, "1": 6}}
    assert manifest["max_source_offsets"] == {"0": 11, "1": 5}
    assert manifest["schema_version"] == 7
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
    assert sorted(p.name for p in exports.iterdir()) == ["latest", first.name]
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
