"""The embedded tansu broker with kafka-python 3: produce, manual assignment, offsets, failures.

Run with ``-s`` to see the measured figures (startup time, throughput, failure timings).
"""

from __future__ import annotations

import json
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import TopicPartition

from services.errors import EventBusError
from services.kafka.broker import EmbeddedBroker, ensure_topics
from services.kafka.config import KafkaSettings

pytestmark = pytest.mark.integration


def key_of(i: int) -> bytes:
    return f"q{i % 97}".encode()


def event(i: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"e{i}",
            "query_id": key_of(i).decode(),
            "action_name": "click",
            "object_id": f"p{i}",
            "position": 1 + i % 10,
            "session_id": f"s{i % 13}",
            "timestamp": "2025-01-01T00:00:00Z",
        }
    ).encode()


def produce(
    settings: KafkaSettings, bootstrap: str, topic: str, n: int, **overrides: Any
) -> tuple[dict[bytes, set[int]], float]:
    """Send ``n`` keyed events and flush; return key → partitions and the seconds it took."""
    producer = KafkaProducer(**{**settings.producer_config(bootstrap), **overrides})
    try:
        start = time.perf_counter()
        futures = [producer.send(topic, key=key_of(i), value=event(i)) for i in range(n)]
        producer.flush()
        elapsed = time.perf_counter() - start
    finally:
        producer.close()
    placed: dict[bytes, set[int]] = defaultdict(set)
    for i, future in enumerate(futures):
        placed[key_of(i)].add(future.get(0).partition)
    return placed, elapsed


def assigned_consumer(settings: KafkaSettings, bootstrap: str, topic: str) -> KafkaConsumer:
    consumer = KafkaConsumer(**settings.consumer_config(bootstrap))
    consumer.assign([TopicPartition(topic, p) for p in range(settings.partitions)])
    return consumer


def drain(consumer: KafkaConsumer, expected: int, timeout_s: float = 8.0) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    return records


def test_broker_starts_fast_and_topics_are_idempotent(kafka_settings: KafkaSettings) -> None:
    start = time.perf_counter()
    with EmbeddedBroker().start() as running:
        startup_ms = (time.perf_counter() - start) * 1000
        created = ensure_topics(running.bootstrap_servers, kafka_settings.topics())
        assert created == sorted(kafka_settings.topics())
        assert ensure_topics(running.bootstrap_servers, kafka_settings.topics()) == []
    print(f"\nbroker start → metadata served: {startup_ms:.0f} ms")
    assert startup_ms < 3000


def test_taken_port_fails_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        start = time.perf_counter()
        with pytest.raises(EventBusError, match="is in use"):
            EmbeddedBroker().start(port=taken.getsockname()[1])
        assert time.perf_counter() - start < 1


def test_produce_and_read_back_with_manual_assignment(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings, kafka_topic: str
) -> None:
    placed, elapsed = produce(kafka_settings, broker.bootstrap_servers, kafka_topic, 1_000)
    print(f"\nproduced 1,000 events (acks=all) in {elapsed:.3f} s: {1_000 / elapsed:,.0f}/s")
    assert all(len(parts) == 1 for parts in placed.values()), "a key spread over partitions"
    assert len({p for parts in placed.values() for p in parts}) == 3

    consumer = assigned_consumer(kafka_settings, broker.bootstrap_servers, kafka_topic)
    try:
        records = drain(consumer, 1_000)
        parts = consumer.assignment()
        ends = consumer.end_offsets(list(parts))
        lag = {tp: lag_of(consumer, tp, ends[tp]) for tp in parts}
        starts = consumer.beginning_offsets(list(parts))
    finally:
        consumer.close()
    assert sorted(json.loads(r.value)["event_id"] for r in records) == sorted(
        f"e{i}" for i in range(1_000)
    )
    for record in records:
        assert placed[record.key] == {record.partition}
    assert sum(ends.values()) <= 1_000 and set(starts.values()) == {0}  # see the quirk below
    assert set(lag.values()) == {0}


def lag_of(consumer: KafkaConsumer, tp: TopicPartition, end_offset: int) -> int:
    """Consumer lag that survives tansu's short end offsets: the fetch high watermark wins."""
    return int(max(end_offset, consumer.highwater(tp) or 0) - consumer.position(tp))


def test_tansu_end_offset_counts_only_the_first_record_of_the_last_batch(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings, kafka_topic: str
) -> None:
    """A tansu quirk: ListOffsets(latest) answers base offset + 1 of the newest batch.

    If this test fails, tansu fixed it and ``end_offsets`` alone gives the lag.
    """
    bootstrap = broker.bootstrap_servers
    producer = KafkaProducer(**kafka_settings.producer_config(bootstrap))
    tp = TopicPartition(kafka_topic, 0)
    try:
        for _ in range(5):
            producer.send(kafka_topic, b"one", partition=0).get(5)
        batch = [producer.send(kafka_topic, b"batch", partition=0) for _ in range(10)]
        producer.flush()
    finally:
        producer.close()
    assert [f.get(0).offset for f in batch] == list(range(5, 15))
    consumer = assigned_consumer(kafka_settings, bootstrap, kafka_topic)
    try:
        assert consumer.end_offsets([tp])[tp] == 6  # real Kafka: 15
        assert len(drain(consumer, 15)) == 15
        assert consumer.highwater(tp) == consumer.position(tp) == 15
    finally:
        consumer.close()


def test_seek_to_stored_offsets_resumes_exactly(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings, kafka_topic: str
) -> None:
    produce(kafka_settings, broker.bootstrap_servers, kafka_topic, 1_000)
    first = assigned_consumer(kafka_settings, broker.bootstrap_servers, kafka_topic)
    stored: dict[TopicPartition, int] = {}  # what the ingest keeps in DuckDB: the next offset
    seen: list[str] = []
    try:
        while len(seen) < 400:
            batch = first.poll(timeout_ms=500, max_records=150)
            for tp, records in batch.items():
                seen.extend(json.loads(r.value)["event_id"] for r in records)
                stored[tp] = records[-1].offset + 1
    finally:
        first.close()

    second = assigned_consumer(kafka_settings, broker.bootstrap_servers, kafka_topic)
    try:
        for tp in second.assignment():
            second.seek(tp, stored.get(tp, 0))
        rest = drain(second, 1_000 - len(seen))
    finally:
        second.close()
    seen.extend(json.loads(r.value)["event_id"] for r in rest)
    assert len(seen) == 1_000 and len(set(seen)) == 1_000


def test_throughput_20k(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings, kafka_topic: str
) -> None:
    _, elapsed = produce(kafka_settings, broker.bootstrap_servers, kafka_topic, 20_000)
    print(f"\nproduced 20,000 events (acks=all) in {elapsed:.3f} s: {20_000 / elapsed:,.0f}/s")
    assert elapsed < 8


def test_idempotent_producer_works_on_a_live_broker(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings, kafka_topic: str
) -> None:
    _, elapsed = produce(
        kafka_settings,
        broker.bootstrap_servers,
        kafka_topic,
        1_000,
        enable_idempotence=True,
        max_in_flight_requests_per_connection=5,
    )
    print(f"\nidempotent producer: 1,000 events in {elapsed:.3f} s")


def test_producer_with_the_broker_down(kafka_settings: KafkaSettings) -> None:
    config = {"delivery_timeout_ms": 2_000, "request_timeout_ms": 1_000}
    running = EmbeddedBroker().start()
    bootstrap = running.bootstrap_servers
    ensure_topics(bootstrap, {"events": 3})
    producer = KafkaProducer(**{**kafka_settings.producer_config(bootstrap), **config})
    producer.send("events", key=b"k", value=b"v").get(5)
    running.stop()
    figures: dict[str, float] = {}

    def timed(name: str, action: Callable[[], object]) -> BaseException | None:
        start = time.perf_counter()
        try:
            action()
            return None
        except KafkaError as exc:
            error: BaseException = exc
            return error
        finally:
            figures[name] = time.perf_counter() - start

    sent: list[Any] = []

    def send_100() -> None:
        sent.extend(producer.send("events", key=b"k", value=b"v") for _ in range(100))

    def new_producer() -> None:
        KafkaProducer(**kafka_settings.producer_config(bootstrap))

    try:
        assert timed("100 send() to a known topic", send_100) is None
        unknown = timed("send() to an unknown topic", lambda: producer.send("x", b"v"))
        assert isinstance(unknown, KafkaTimeoutError)
        flushed = timed("flush(timeout=0.5)", lambda: producer.flush(0.5))
        assert isinstance(flushed, KafkaTimeoutError)
        assert timed("flush() without timeout", producer.flush) is None
        assert all(isinstance(f.exception, KafkaTimeoutError) for f in sent)
    finally:
        producer.close(timeout=1)
    assert isinstance(timed("KafkaProducer() while down", new_producer), KafkaTimeoutError)
    with pytest.raises(EventBusError, match="Cannot reach Kafka"):
        ensure_topics(bootstrap, {"events": 3}, timeout_s=0.5)
    print("\nbroker down: " + ", ".join(f"{k} {v:.3f} s" for k, v in figures.items()))
    assert figures["100 send() to a known topic"] < 0.5
    assert figures["send() to an unknown topic"] < 1.0
    assert figures["flush() without timeout"] < 4.0  # bounded by delivery_timeout_ms
    assert figures["KafkaProducer() while down"] < 4.0  # bounded by bootstrap_timeout_ms


def test_restart_loses_everything_and_breaks_idempotent_producers(
    kafka_settings: KafkaSettings,
) -> None:
    running = EmbeddedBroker().start()
    bootstrap = running.bootstrap_servers
    ensure_topics(bootstrap, {"events": 3})
    plain = KafkaProducer(**kafka_settings.producer_config(bootstrap))
    idempotent = KafkaProducer(
        **{**kafka_settings.producer_config(bootstrap), "enable_idempotence": True}
    )
    for producer in (plain, idempotent):
        producer.send("events", key=b"k", value=b"before").get(5)
    running.stop()
    with running.start(port=int(bootstrap.rsplit(":", 1)[1])):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            assert "events" not in admin.list_topics()  # memory storage: all data is gone
        finally:
            admin.close()
        ensure_topics(bootstrap, {"events": 3})
        assert plain.send("events", key=b"k", value=b"after").get(5).offset == 0
        with pytest.raises(KafkaError):  # UnknownProducerId, then InitProducerId fails forever
            idempotent.send("events", key=b"k", value=b"after").get(5)
    for producer in (plain, idempotent):
        producer.close(timeout=1)


def test_group_subscription_joins_within_the_session_timeout(
    broker: EmbeddedBroker, kafka_settings: KafkaSettings, kafka_topic: str
) -> None:
    produce(kafka_settings, broker.bootstrap_servers, kafka_topic, 30)
    joined: list[float] = []

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        def on_partitions_assigned(self, assigned: Any) -> None:
            joined.append(time.perf_counter())

    config = kafka_settings.consumer_config(broker.bootstrap_servers)
    consumer = KafkaConsumer(**config, group_id=f"g-{kafka_topic}")
    start = time.perf_counter()
    try:
        consumer.subscribe([kafka_topic], listener=Listener())
        records = drain(consumer, 30, timeout_s=9)
    finally:
        consumer.close()
    assert joined and len(records) == 30
    print(f"\ngroup join (session_timeout_ms=6000): {joined[0] - start:.2f} s")
