"""Kafka → DuckDB, exactly once.

The ingest is the single DuckDB writer, so it assigns itself every partition of the events
topic (no consumer group to join) and seeks each to the next offset stored in DuckDB. Each poll
batch becomes one transaction holding its events, its dead letters and the partitions' next
offsets: a crash before the commit re-reads the batch, a crash after it never does, and a
re-delivered ``event_id`` is ignored.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from feedback_ingest.store import DeadLetter, EventStore, Sourced, StoreError
from services.errors import EventBusError
from services.events import InteractionEvent, MalformedEventError, QueryEvent, parse_event
from services.kafka.broker import ensure_topics
from services.kafka.config import KafkaSettings
from services.metrics import (
    CONSUMER_LAG,
    EVENTS_DUPLICATE,
    EVENTS_INGESTED,
    EVENTS_REJECTED,
    INGEST_BATCH_SIZE,
    INGEST_COMMIT_SECONDS,
)

logger = logging.getLogger(__name__)

LAG_REFRESH_S = 5.0
DLQ_RAW_CHARS = 16_384


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one poll batch did."""

    records: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_letters: int = 0


class Ingestor:
    """Reads the events topic and writes each poll batch to the store in one transaction."""

    def __init__(
        self, kafka: KafkaSettings, store: EventStore, bootstrap: str | None = None
    ) -> None:
        self.kafka = kafka
        self.store = store
        self.bootstrap = bootstrap or kafka.bootstrap()
        self._consumer: KafkaConsumer | None = None
        self._dlq: KafkaProducer | None = None
        self._lag_checked = 0.0

    def start(self) -> None:
        """Connect, assign every partition and seek each to its stored offset."""
        ensure_topics(self.bootstrap, self.kafka.topics(), self.kafka.replication_factor)
        try:
            self._consumer = KafkaConsumer(**self.kafka.consumer_config(self.bootstrap))
            self._dlq = KafkaProducer(**self.kafka.producer_config(self.bootstrap))
        except KafkaError as exc:
            raise EventBusError(
                f"Cannot reach Kafka at {self.bootstrap} ({exc}); start `flywheel broker` or "
                "set FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS."
            ) from exc
        partitions = sorted(self._consumer.partitions_for_topic(self.kafka.topic) or [])
        self._consumer.assign([TopicPartition(self.kafka.topic, p) for p in partitions])
        self._rewind()
        logger.info(
            "ingesting %s partitions %s from %s", self.kafka.topic, partitions, self.bootstrap
        )

    def _rewind(self) -> None:
        """Seek every assigned partition to the offset DuckDB says is next."""
        consumer = self._require()
        stored = self.store.stored_offsets(self.kafka.topic)
        for tp in consumer.assignment():
            if tp.partition in stored:
                consumer.seek(tp, stored[tp.partition])
            else:
                consumer.seek_to_beginning(tp)

    def poll_batch(self, timeout_ms: int = 1000) -> BatchStats:
        """Poll once and store what came, atomically with the next offsets."""
        consumer = self._require()
        polled = consumer.poll(timeout_ms=timeout_ms)
        self._update_lag()
        if not polled:
            return BatchStats()
        queries: list[Sourced[QueryEvent]] = []
        interactions: list[Sourced[InteractionEvent]] = []
        letters: list[DeadLetter] = []
        offsets: dict[tuple[str, int], int] = {}
        for tp, records in polled.items():
            for record in records:
                offsets[(tp.topic, tp.partition)] = record.offset + 1
                try:
                    event = self._decode(record)
                except MalformedEventError as exc:
                    letters.append(
                        DeadLetter(
                            tp.topic,
                            tp.partition,
                            record.offset,
                            exc.code,
                            exc.reason,
                            record.value,
                        )
                    )
                    continue
                if isinstance(event, QueryEvent):
                    queries.append(Sourced(event, tp.partition, record.offset))
                else:
                    interactions.append(Sourced(event, tp.partition, record.offset))
        # The dead-letter topic is at-least-once (flushed before the commit); the table is
        # exactly-once with the batch.
        self._publish_dead_letters(letters)
        started = time.perf_counter()
        try:
            result = self.store.write_batch(queries, interactions, letters, offsets)
        except StoreError:
            logger.exception("batch not stored; re-reading it from the stored offsets")
            self._rewind()
            raise
        INGEST_COMMIT_SECONDS.observe(time.perf_counter() - started)
        records_count = sum(len(r) for r in polled.values())
        INGEST_BATCH_SIZE.observe(records_count)
        EVENTS_INGESTED.labels(action="query").inc(len(queries))
        for inter in interactions:
            EVENTS_INGESTED.labels(action=inter.event.action_name).inc()
        EVENTS_DUPLICATE.inc(result.duplicates)
        for letter in letters:
            EVENTS_REJECTED.labels(reason=letter.reason_code).inc()
        return BatchStats(records_count, result.inserted, result.duplicates, len(letters))

    def _decode(self, record: ConsumerRecord) -> QueryEvent | InteractionEvent:
        raw = record.value
        if raw is None:
            raise MalformedEventError("bad_json", "empty record value (tombstone)")
        if len(raw) > self.kafka.consumer.max_message_bytes:
            raise MalformedEventError(
                "oversized", f"{len(raw)} bytes > limit {self.kafka.consumer.max_message_bytes}"
            )
        return parse_event(raw)

    def _publish_dead_letters(self, letters: list[DeadLetter]) -> None:
        if not letters or self._dlq is None:
            return
        for letter in letters:
            raw = letter.raw if isinstance(letter.raw, bytes) else (letter.raw or "").encode()
            body = {
                "reason_code": letter.reason_code,
                "reason": letter.reason,
                "topic": letter.topic,
                "partition": letter.partition,
                "offset": letter.offset,
                "raw": raw[:DLQ_RAW_CHARS].decode("utf-8", errors="replace"),
            }
            self._dlq.send(self.kafka.dlq_topic, value=json.dumps(body).encode())
        try:
            self._dlq.flush(timeout=self.kafka.producer.delivery_timeout_ms / 1000)
        except KafkaError:
            logger.warning(
                "dead letters not confirmed on %s; they are in the dead_letters table",
                self.kafka.dlq_topic,
            )

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_checked < LAG_REFRESH_S:
            return
        self._lag_checked = now
        consumer = self._require()
        try:
            ends = consumer.end_offsets(list(consumer.assignment()))
        except KafkaError:
            return
        for tp, end in ends.items():
            # tansu under-reports end_offsets; the fetch high watermark is right.
            latest = max(end or 0, consumer.highwater(tp) or 0)
            CONSUMER_LAG.labels(partition=str(tp.partition)).set(
                max(0, latest - consumer.position(tp))
            )

    def _require(self) -> KafkaConsumer:
        if self._consumer is None:
            raise EventBusError("The ingestor is not started; call start() first.")
        return self._consumer

    def close(self) -> None:
        """Close the Kafka clients (the store is the caller's)."""
        if self._consumer is not None:
            self._consumer.close()
        if self._dlq is not None:
            self._dlq.close(timeout=5)
