"""encoder_server's event sink: an accepted event survives a deploy, a crash and a broker
outage (the spool), and a replayed duplicate is stored once by the ingest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.events import InteractionEvent
from services.kafka.broker import EmbeddedBroker
from services.kafka.config import KafkaSettings
from services.kafka.producer import KafkaEventSink
from services.net import free_port
from tests.integration.test_ingest_exactly_once import Topics, finish, start_ingest, stored
from tests.integration.test_serve_process import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def clicks(n: int, start: int = 0) -> list[InteractionEvent]:
    return [
        InteractionEvent(
            event_id=f"e{i}", query_id=f"q{i % 7}", action_name="click", object_id="p", position=1
        )
        for i in range(start, start + n)
    ]


def settings(bootstrap: str, topics: Topics | None = None) -> KafkaSettings:
    cfg = KafkaSettings(bootstrap_servers=bootstrap)
    if topics is not None:
        cfg.topic, cfg.dlq_topic = topics.events, topics.dlq
    cfg.producer.bootstrap_timeout_ms = 300
    return cfg


def test_events_accepted_while_kafka_is_down_survive_a_restart(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topics = Topics(broker.bootstrap_servers)
    down = f"127.0.0.1:{free_port('127.0.0.1')}"  # nothing listens here
    sink = KafkaEventSink(settings(down, topics), tmp_path / "spool")
    outcome = sink.publish(clicks(100), timeout_s=0.2)
    assert (len(outcome.accepted), len(outcome.pending), outcome.refused) == (0, 100, [])
    sink.close(timeout_s=0.5)  # a deploy: before, the in-memory backlog died here
    again = KafkaEventSink(settings(broker.bootstrap_servers, topics), tmp_path / "spool")
    try:
        assert again.publish(clicks(1, start=100), timeout_s=5).accepted == ["e100"]
        found = read_topic(broker.bootstrap_servers, topics.events, want=101)
    finally:
        again.close()
    assert sorted(str(e["event_id"]) for e in found) == sorted(f"e{i}" for i in range(101))
    assert list((tmp_path / "spool" / "0").glob("*.spool")) == []  # all acknowledged


CRASH = """
import os, sys
from pathlib import Path
from services.events import InteractionEvent
from services.kafka.config import KafkaSettings
from services.kafka.producer import KafkaEventSink
cfg = KafkaSettings(bootstrap_servers=sys.argv[2], topic=sys.argv[3], dlq_topic=sys.argv[4])
sink = KafkaEventSink(cfg, Path(sys.argv[1]))
events = [InteractionEvent(event_id=f"e{i}", query_id="q", action_name="click", object_id="p",
                           position=1) for i in range(300)]
outcome = sink.publish(events, timeout_s=5)
assert not outcome.refused, outcome
print(len(outcome.accepted) + len(outcome.pending), flush=True)
os._exit(9)  # killed right after answering: acknowledged ones may still be in the spool
"""


def test_a_crashed_server_replays_its_spool_and_the_ingest_stores_each_event_once(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topics = Topics(broker.bootstrap_servers)
    spool = tmp_path / "spool"
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASH,
            str(spool),
            broker.bootstrap_servers,
            topics.events,
            topics.dlq,
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 9, child.stderr
    assert int(child.stdout) == 300
    again = KafkaEventSink(settings(broker.bootstrap_servers, topics), spool)
    again.close(timeout_s=10)  # replays whatever the crash left, acknowledged or not
    assert list((spool / "0").glob("*.spool")) == []
    finish(start_ingest(tmp_path, topics))
    count, distinct, _ = stored(tmp_path)
    assert count == distinct == 300  # replayed duplicates are stored once
    sent = read_topic(broker.bootstrap_servers, topics.events, want=10_000, timeout_s=3)
    assert len({json.dumps(e, sort_keys=True) for e in sent}) == 300


def test_a_full_spool_and_a_closing_sink_refuse_instead_of_losing(tmp_path: Path) -> None:
    cfg = settings(f"127.0.0.1:{free_port('127.0.0.1')}")  # Kafka down: nothing drains
    cfg.spool.max_events = 50
    sink = KafkaEventSink(cfg, tmp_path / "spool")
    try:
        assert len(sink.publish(clicks(40), timeout_s=0.1).pending) == 40
        over = sink.publish(clicks(20, start=40), timeout_s=0.1)
        assert (over.accepted, over.pending, len(over.refused)) == ([], [], 20)  # -> 503
        assert sink.emit(clicks(1, start=99)[0]) is True
        assert sink.backlog() == 41
    finally:
        sink.close(timeout_s=0.2)
    late = sink.publish(clicks(1, start=100), timeout_s=0.1)
    assert late.refused == ["e100"]  # a stopping server answers 503, never a 2xx it can't keep
