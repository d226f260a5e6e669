"""feedback_ingest against the real broker and a real DuckDB file: exactly once, whatever happens.

Each test runs `flywheel ingest` as a separate process, so a SIGKILL is a real crash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from feedback_ingest.store import latest_snapshot
from services.kafka.broker import EmbeddedBroker, ensure_topics
from services.net import free_port
from services.snapshots import Snapshot
from tests.integration.tcp_proxy import DroppingProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Topics:
    def __init__(self, bootstrap: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.events = f"it.events.{suffix}"
        self.dlq = f"it.dlq.{suffix}"
        ensure_topics(bootstrap, {self.events: 3, self.dlq: 1})


def interaction(i: int) -> dict[str, object]:
    return {
        "type": "interaction",
        "event_id": f"e{i}",
        "query_id": f"q{i % 211}",
        "action_name": ("impression", "click", "add_to_cart", "purchase")[i % 4],
        "object_id": f"p{i % 500}",
        "position": 1 + i % 10,
        "session_id": f"s{i % 31}",
    }


def produce(bootstrap: str, topic: str, values: list[bytes], pace_s: float = 0.0) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for n, value in enumerate(values):
        producer.send(topic, key=f"k{n % 97}".encode(), value=value)
        if pace_s and n % 500 == 0:
            time.sleep(pace_s)
    producer.flush()
    producer.close()


def start_ingest(home: Path, topics: Topics, idle_exit_s: float = 4) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FLYWHEEL_HOME": str(home),
        "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": topics.bootstrap,
        "FLYWHEEL_KAFKA__TOPIC": topics.events,
        "FLYWHEEL_KAFKA__DLQ_TOPIC": topics.dlq,
        "FLYWHEEL_INGEST__METRICS_PORT": "0",
        "FLYWHEEL_INGEST__POLL_TIMEOUT_MS": "200",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flywheel_cli", "ingest", "--idle-exit-s", str(idle_exit_s)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(proc: subprocess.Popen[bytes], timeout_s: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def stored(home: Path) -> tuple[int, int, dict[int, int]]:
    con = duckdb.connect(str(home / "events.duckdb"), read_only=True)
    try:
        events = con.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM interactions"
        ).fetchone()
        offsets = dict(
            con.execute("SELECT partition, next_offset FROM consumer_offsets").fetchall()
        )
    finally:
        con.close()
    assert events is not None
    return int(events[0]), int(events[1]), offsets


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Topics:
    return Topics(broker.bootstrap_servers)


def test_sigkill_mid_stream_loses_and_doubles_nothing(topics: Topics, tmp_path: Path) -> None:
    n = 30_000
    values = [json.dumps(interaction(i)).encode() for i in range(n)]
    producer = threading.Thread(
        target=produce, args=(topics.bootstrap, topics.events, values, 0.02)
    )
    proc = start_ingest(tmp_path, topics)
    producer.start()
    kills = 0
    for delay in (2.5, 1.2, 0.7):  # crash it again and again while events stream in
        # Count from the moment it is up: on loaded cores its start-up alone can take seconds.
        deadline = time.monotonic() + 60
        while not (tmp_path / "events.duckdb").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        count, _, _ = stored(tmp_path)
        assert count < n or not producer.is_alive()
        proc = start_ingest(tmp_path, topics)
    producer.join()
    finish(proc)
    count, distinct, offsets = stored(tmp_path)
    assert kills == 3
    assert count == distinct == n
    assert sum(offsets.values()) == n  # offsets start at 0: every record consumed once


def test_every_event_produced_twice_is_stored_once(topics: Topics, tmp_path: Path) -> None:
    values = [json.dumps(interaction(i)).encode() for i in range(5_000)]
    produce(topics.bootstrap, topics.events, values + values[::-1])
    finish(start_ingest(tmp_path, topics))
    count, distinct, _ = stored(tmp_path)
    assert count == distinct == 5_000


def test_malformed_events_go_to_the_dead_letter_table_and_topic(
    topics: Topics, tmp_path: Path
) -> None:
    good = [json.dumps(interaction(i)).encode() for i in range(300)]
    bad = {
        "bad_json": b"{not json",
        "invalid_field": json.dumps({**interaction(9001), "position": "first"}).encode(),
        "unknown_action": json.dumps({**interaction(9002), "action_name": "hover"}).encode(),
        "missing_id": json.dumps(
            {k: v for k, v in interaction(9003).items() if k != "event_id"}
        ).encode(),
        "oversized": json.dumps({**interaction(9004), "pad": "x" * 70_000}).encode(),
        "unknown_type": json.dumps({"type": "pageview", "query_id": "q"}).encode(),
    }
    stream = good[:100] + list(bad.values()) + good[100:]
    produce(topics.bootstrap, topics.events, stream)
    finish(start_ingest(tmp_path, topics))
    con = duckdb.connect(str(tmp_path / "events.duckdb"), read_only=True)
    letters = con.execute("SELECT reason_code, reason FROM dead_letters ORDER BY id").fetchall()
    count = con.execute("SELECT count(*) FROM interactions").fetchone()
    con.close()
    assert count == (300,)
    assert sorted(code for code, _ in letters) == sorted(bad)
    assert all(reason for _, reason in letters)
    consumer = KafkaConsumer(
        bootstrap_servers=topics.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    consumer.assign([TopicPartition(topics.dlq, 0)])
    dlq = [json.loads(r.value) for r in consumer]
    consumer.close()
    assert sorted(d["reason_code"] for d in dlq) == sorted(bad)
    assert all(d["topic"] == topics.events and d["offset"] >= 0 for d in dlq)


@pytest.fixture
def proxied_broker() -> Iterator[tuple[EmbeddedBroker, DroppingProxy]]:
    broker_port, proxy_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    proxy = DroppingProxy(proxy_port, broker_port)
    broker = EmbeddedBroker(advertised_port=proxy_port).start(port=broker_port)
    yield broker, proxy
    broker.stop()
    proxy.close()


def test_broker_connection_drops_mid_stream(
    proxied_broker: tuple[EmbeddedBroker, DroppingProxy], tmp_path: Path
) -> None:
    broker, proxy = proxied_broker
    topics = Topics(broker.bootstrap_servers)
    n = 20_000
    values = [json.dumps(interaction(i)).encode() for i in range(n)]
    produce(topics.bootstrap, topics.events, values[: n // 2])
    proc = start_ingest(tmp_path, topics, idle_exit_s=8)
    cut = 0
    for _ in range(4):
        time.sleep(0.8)
        cut += proxy.drop()
    produce(topics.bootstrap, topics.events, values[n // 2 :])
    time.sleep(0.5)
    cut += proxy.drop()
    finish(proc)
    assert cut > 0
    count, distinct, offsets = stored(tmp_path)
    assert count == distinct == n
    assert sum(offsets.values()) == n  # offsets start at 0: every record consumed once


def test_sigterm_finishes_cleanly_and_a_second_writer_fails_fast(
    topics: Topics, tmp_path: Path
) -> None:
    produce(
        topics.bootstrap, topics.events, [json.dumps(interaction(i)).encode() for i in range(50)]
    )
    first = start_ingest(tmp_path, topics, idle_exit_s=60)
    deadline = time.monotonic() + 30
    while not (tmp_path / "events.duckdb").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)
    second = start_ingest(tmp_path, topics)
    out = finish_with_error(second)
    assert "holds" in out and "one writing process" in " ".join(out.split())
    first.send_signal(signal.SIGTERM)
    log = finish(first, timeout_s=30)
    assert "finishing the current batch" in log
    assert stored(tmp_path)[0] == 50


def finish_with_error(proc: subprocess.Popen[bytes]) -> str:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out.decode()
    return out.decode()


def test_running_ingest_snapshots_on_demand_and_exports_online_metrics(
    topics: Topics, tmp_path: Path
) -> None:
    from tests.feedback_ingest.builders import act, query

    session = [
        query("qa", "Cordless  Drill", ["p1", "p2", "p3"], version="v1"),
        act("qa", "impression", "p1", 1),
        act("qa", "click", "p2", 2),
        act("qa", "purchase", "p2", 2),
        query("qb", "hose", ["p7", "p8"], version="v2", arm="canary"),
        act("qb", "add_to_cart", "p7", 1),
    ]
    produce(topics.bootstrap, topics.events, [e.model_dump_json().encode() for e in session])
    metrics_port = free_port("127.0.0.1")
    env = {
        **os.environ,
        "FLYWHEEL_HOME": str(tmp_path),
        "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": topics.bootstrap,
        "FLYWHEEL_KAFKA__TOPIC": topics.events,
        "FLYWHEEL_KAFKA__DLQ_TOPIC": topics.dlq,
        "FLYWHEEL_INGEST__METRICS_PORT": str(metrics_port),
        "FLYWHEEL_INGEST__POLL_TIMEOUT_MS": "200",
        "FLYWHEEL_INGEST__ONLINE_METRICS_INTERVAL_S": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "flywheel_cli", "ingest"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # The ingest holds the DuckDB file: wait until it has read everything, then ask it.
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            try:
                text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            except httpx.TransportError:
                text = ""
            if 'flywheel_online_ndcg_at_10{arm="canary",model_version="v2"}' in text:
                break
            time.sleep(0.5)
        # qb: add-to-cart at position 1 of 2 -> the ideal order, nDCG 1.0
        assert 'flywheel_online_ndcg_at_10{arm="canary",model_version="v2"} 1.0' in text
        assert 'flywheel_events_ingested_total{action="purchase"} 1.0' in text
        assert "flywheel_ingest_commit_seconds_bucket" in text
        snap = subprocess.run(
            [sys.executable, "-m", "flywheel_cli", "snapshot", "--wait-s", "60"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert snap.returncode == 0, snap.stdout + snap.stderr
        assert "snapshot written" in snap.stdout
        folder = latest_snapshot(tmp_path / "exports")
        assert folder is not None
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["tables"]["queries"]["rows"] == 2
        assert manifest["tables"]["interactions"]["rows"] == 4
        judgments = Snapshot(folder).fetch("SELECT product_id, grade FROM judgments ORDER BY 1")
        assert judgments == [("p1", 0), ("p2", 3), ("p7", 2)]
        assert proc.poll() is None  # the request was served by the running ingest
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
