"""feedback_ingest under faults: poison records, a failing dead-letter topic, a failing store,
offsets outside the log, a recreated topic and new partitions; real broker, real DuckDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from kafka import KafkaAdminClient

from feedback_ingest.consumer import Ingestor
from feedback_ingest.store import EventStore
from feedback_ingest.store.offsets import offset_gaps
from services.kafka.broker import EmbeddedBroker, ensure_topics
from services.kafka.config import KafkaSettings
from services.metrics import OFFSET_GAPS
from tests.integration.test_ingest_exactly_once import (
    Topics,
    finish,
    interaction,
    produce,
    start_ingest,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Topics:
    return Topics(broker.bootstrap_servers)


def settings_for(topics: Topics, **producer: object) -> KafkaSettings:
    settings = KafkaSettings(
        bootstrap_servers=topics.bootstrap, topic=topics.events, dlq_topic=topics.dlq
    )
    settings.producer = settings.producer.model_copy(update=producer)
    return settings


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(tmp_path / "events.duckdb") as opened:
        yield opened


def drain(ingestor: Ingestor, want: int, timeout_s: float = 30) -> int:
    """Poll until ``want`` records were handled (stored or dead-lettered)."""
    seen = 0
    deadline = time.monotonic() + timeout_s
    while seen < want and time.monotonic() < deadline:
        seen += ingestor.poll_batch(200).records
        seen += ingestor.flush().records  # the writer thread is done with the store
    return seen


def count(store: EventStore, table: str) -> int:
    row = store.con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def test_poison_records_never_stop_the_partition(topics: Topics, tmp_path: Path) -> None:
    good = [json.dumps(interaction(i)).encode() for i in range(200)]
    poison = [
        b'{"type": "interaction", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",  # RecursionError
        json.dumps({**interaction(9001), "session_id": "\ud800"}).encode(),  # lone surrogate
        json.dumps(
            {
                "type": "query",
                "query_id": "q",
                "user_query": "x",
                "model_version": "v1",
                "arm": "production",
                "results": ["p"],
                "page": 2**40,
            }
        ).encode(),
    ]
    produce(topics.bootstrap, topics.events, good[:100] + poison + good[100:])
    finish(start_ingest(tmp_path, topics))  # exits 0 on its own: it never crashed
    con = duckdb.connect(str(tmp_path / "events.duckdb"), read_only=True)
    try:
        stored = con.execute("SELECT count(*) FROM interactions").fetchone()
        letters = con.execute("SELECT reason_code, reason FROM dead_letters").fetchall()
        offsets = con.execute("SELECT sum(next_offset) FROM consumer_offsets").fetchone()
    finally:
        con.close()
    assert stored == (200,)
    assert len(letters) == 3 and all(reason for _, reason in letters)
    assert offsets == (203,)


def test_a_failing_dead_letter_topic_never_stops_the_ingest(
    topics: Topics, store: EventStore
) -> None:
    # A dead letter larger than max_request_size makes send() itself raise a KafkaError.
    settings = settings_for(topics, max_request_size=1_024)
    bad = [json.dumps({**interaction(i), "position": "x" * 4_000}).encode() for i in range(3)]
    produce(topics.bootstrap, topics.events, [*bad, json.dumps(interaction(7)).encode()])
    ingestor = Ingestor(settings, store)
    ingestor.start()
    try:
        assert drain(ingestor, 4) == 4
    finally:
        ingestor.close()
    assert count(store, "dead_letters") == 3
    assert count(store, "interactions") == 1


SMALL_DISK = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.argv = ["flywheel", "ingest"]
runpy.run_module("flywheel_cli", run_name="__main__")
"""
"""``flywheel ingest`` on a disk that fills up: no file of the process may grow past argv[1]."""


def test_a_store_that_keeps_failing_makes_the_ingest_exit_nonzero(
    topics: Topics, tmp_path: Path
) -> None:
    with EventStore(tmp_path / "events.duckdb"):
        pass  # migrated; the file cannot grow much beyond this from now on
    size = (tmp_path / "events.duckdb").stat().st_size
    produce(
        topics.bootstrap,
        topics.events,
        [
            json.dumps({**interaction(i), "session_id": f"s{i}" * 20}).encode()
            for i in range(20_000)
        ],
    )
    env = {
        **os.environ,
        "FLYWHEEL_HOME": str(tmp_path),
        "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": topics.bootstrap,
        "FLYWHEEL_KAFKA__TOPIC": topics.events,
        "FLYWHEEL_KAFKA__DLQ_TOPIC": topics.dlq,
        "FLYWHEEL_INGEST__METRICS_PORT": "0",
        "FLYWHEEL_INGEST__STORE_RETRIES": "2",
        "FLYWHEEL_INGEST__STORE_RETRY_INITIAL_S": "0.2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SMALL_DISK, str(size + 256 * 1024)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = proc.communicate(timeout=120)  # before the fix: retried every second, forever
    log = " ".join(out.decode().split())
    assert proc.returncode != 0, log
    assert "giving up" in log and "refused 3 batches in a row" in log


def test_offsets_past_the_log_end_are_recorded_and_nothing_is_skipped(
    topics: Topics, store: EventStore
) -> None:
    produce(
        topics.bootstrap, topics.events, [json.dumps(interaction(i)).encode() for i in range(60)]
    )
    # Offsets from a log that no longer exists, e.g. a broker that lost its data.
    store.write_batch(offsets={(topics.events, p): 500 for p in range(3)})
    before = OFFSET_GAPS.labels(kind="past_log_end")._value.get()
    ingestor = Ingestor(settings_for(topics), store)
    ingestor.start()
    try:
        drain(ingestor, 60)
    finally:
        ingestor.close()
    assert count(store, "interactions") == 60  # before: 0, every record skipped silently
    gaps = offset_gaps(store)
    assert sorted(g.partition for g in gaps) == [0, 1, 2]
    assert {(g.kind, g.stored_offset, g.resumed_at) for g in gaps} == {("past_log_end", 500, 0)}
    assert all(g.log_end is not None and g.log_end < 500 for g in gaps)
    assert OFFSET_GAPS.labels(kind="past_log_end")._value.get() == before + 3
    assert store.stored_offsets(topics.events) == {
        g.partition: g.log_end for g in gaps if g.log_end
    }


def test_a_recreated_topic_is_a_recorded_gap_and_new_partitions_are_read(
    broker: EmbeddedBroker, store: EventStore
) -> None:
    topics = Topics(broker.bootstrap_servers)
    admin = KafkaAdminClient(bootstrap_servers=topics.bootstrap)
    admin.delete_topics([topics.events])
    ensure_topics(topics.bootstrap, {topics.events: 1})  # one partition to start with
    produce(
        topics.bootstrap, topics.events, [json.dumps(interaction(i)).encode() for i in range(30)]
    )
    settings = settings_for(topics)
    settings.partitions = 1
    ingestor = Ingestor(settings, store, metadata_refresh_s=1)
    ingestor.start()
    try:
        assert drain(ingestor, 30) == 30
        # The topic is deleted and created again with three partitions (tansu has no
        # CreatePartitions); the new log's offsets start at 0 again.
        admin.delete_topics([topics.events])
        ensure_topics(topics.bootstrap, {topics.events: 3})
        later = [json.dumps(interaction(i)).encode() for i in range(1000, 1090)]
        produce(topics.bootstrap, topics.events, later)
        deadline = time.monotonic() + 30
        while count(store, "interactions") < 120 and time.monotonic() < deadline:
            ingestor.poll_batch(200)
            ingestor.flush()
        (described,) = admin.describe_topics([topics.events])
    finally:
        ingestor.close()
        admin.close()
    assert count(store, "interactions") == 120  # before: new partitions never read
    partitions = {p["partition_index"] for p in described["partitions"]}
    assert partitions >= {0, 1, 2}
    assert set(store.stored_offsets(topics.events)) == partitions
    # Seen first either by the new topic id or by a fetch whose high watermark is below the
    # stored offset, whichever reaches the ingest first; both resume at the log start.
    first = offset_gaps(store)[0]
    assert first.kind in ("topic_recreated", "past_log_end")
    assert (first.partition, first.stored_offset, first.resumed_at) == (0, 30, 0)
