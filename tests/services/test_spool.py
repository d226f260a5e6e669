"""The durable event spool: what is fsynced survives a crash, what Kafka acknowledged goes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.kafka.spool import Spool

CRASH = """
import os, sys
from pathlib import Path
from services.kafka.spool import Spool
spool = Spool(Path(sys.argv[1]), segment_bytes=256)
entries = [e for i in range(50) for e in spool.append([(b"k%d" % i, b"event-%d" % i)])]
spool.sync()
for entry in entries[:20]:
    spool.ack(entry)  # Kafka acknowledged these
os._exit(9)  # a crash: no close(), no flush of anything else
"""


def test_a_crash_leaves_every_unacknowledged_event_to_replay(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    child = subprocess.run(
        [sys.executable, "-c", CRASH, str(root)],
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert child.returncode == 9
    spool = Spool(root)
    try:
        values = [e.value for e in spool.replayed()]
    finally:
        spool.close()
    # Small segments: acknowledged ones were deleted whole, so replay starts near event 20.
    assert set(values) >= {b"event-%d" % i for i in range(20, 50)}
    assert len(values) < 50


def test_acknowledged_segments_are_deleted_and_a_clean_close_leaves_nothing(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, segment_bytes=100)
    entries = [e for i in range(30) for e in spool.append([(b"k", b"v%d" % i)])]
    spool.sync()
    assert len(list(spool.folder.glob("*.spool"))) > 3
    for entry in entries:
        spool.ack(entry)
    assert spool.size == 0
    spool.close()
    assert list(spool.folder.glob("*.spool")) == []
    again = Spool(tmp_path)
    assert again.replayed() == []
    again.close()


def test_a_torn_record_ends_the_replay_and_nothing_after_it_is_lost(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([(b"k", b"whole")])
    spool.sync()
    segment = next(spool.folder.glob("*.spool"))
    spool.close()
    with segment.open("ab") as handle:
        handle.write(b"\x01\x02\x03")  # a header cut short by a crash mid-write
    reopened = Spool(tmp_path)
    assert [e.value for e in reopened.replayed()] == [b"whole"]
    reopened.close()


def test_two_servers_sharing_a_home_use_separate_slots(tmp_path: Path) -> None:
    first, second = Spool(tmp_path), Spool(tmp_path)
    try:
        assert first.folder != second.folder
    finally:
        first.close()
        second.close()
