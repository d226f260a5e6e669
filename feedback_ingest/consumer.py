"""Kafka → DuckDB, exactly once.

The ingest is the single DuckDB writer, so it assigns itself every partition of the events
topic (no consumer group to join) and seeks each to the next offset stored in DuckDB. Each poll
batch becomes one transaction holding its events, its dead letters and the partitions' next
offsets: a crash before the commit re-reads the batch, a crash after it never does, and a
re-delivered ``event_id`` is ignored.

A record that cannot be stored, whatever the reason, becomes a dead letter; it never stops
the partition. Stored offsets outside the log are recorded as gaps (:mod:`.log_range`), never
skipped silently, and partitions added to the topic later are picked up on the next metadata
refresh.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, OffsetOutOfRangeError
from kafka.structs import TopicPartition

from feedback_ingest.log_range import LogRange
from feedback_ingest.store import BatchResult, DeadLetter, EventStore, Sourced, StoreError
from services.errors import EventBusError
from services.events import (
    AnyEvent,
    InteractionEvent,
    MalformedEventError,
    QueryEvent,
    parse_event,
)
from services.kafka.broker import ensure_topics
from services.kafka.config import KafkaSettings
from services.metrics import (
    CONSUMER_LAG,
    DEAD_LETTER_PUBLISH_ERRORS,
    EVENTS_DUPLICATE,
    EVENTS_INGESTED,
    EVENTS_REJECTED,
    INGEST_BATCH_SIZE,
    INGEST_COMMIT_SECONDS,
    INGEST_LAST_COMMIT,
    INGEST_PARTITIONS,
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
    committed: bool = False
    """A batch was written: the store works (an empty poll says nothing about it)."""


class Ingestor:
    """Reads the events topic and writes each poll batch to the store in one transaction."""

    def __init__(
        self,
        kafka: KafkaSettings,
        store: EventStore,
        bootstrap: str | None = None,
        *,
        metadata_refresh_s: float = 30.0,
    ) -> None:
        self.kafka = kafka
        self.store = store
        self.bootstrap = bootstrap or kafka.bootstrap()
        self.metadata_refresh_s = metadata_refresh_s
        self._consumer: KafkaConsumer | None = None
        self._dlq: KafkaProducer | None = None
        self._range: LogRange | None = None
        self._lag_checked = 0.0
        self._metadata_checked = 0.0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self._pending: tuple[Future[BatchResult], _Batch] | None = None

    def start(self) -> None:
        """Connect, assign every partition and seek each to its stored offset."""
        ensure_topics(
            self.bootstrap,
            self.kafka.topics(),
            self.kafka.replication_factor,
            security=self.kafka.security_config(),
        )
        try:
            config = {
                **self.kafka.consumer_config(self.bootstrap),
                # Never reset an out-of-range offset silently: LogRange records it first.
                # (Where a partition without a stored offset starts is _rewind's choice.)
                "auto_offset_reset": "none",
                "metadata_max_age_ms": max(1000, int(self.metadata_refresh_s * 1000)),
            }
            self._consumer = KafkaConsumer(**config)
            self._dlq = KafkaProducer(**self.kafka.producer_config(self.bootstrap))
        except KafkaError as exc:
            raise EventBusError(
                f"Cannot reach Kafka at {self.bootstrap} ({exc}); start `flywheel broker` or "
                "set FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS."
            ) from exc
        self._range = LogRange(self._consumer, self.store, self.kafka.topic)
        self._refresh_partitions()

    def _refresh_partitions(self) -> None:
        """Assign partitions the topic has gained since the last look (all of them at start)."""
        consumer = self._require()
        self._metadata_checked = time.monotonic()
        found = consumer.partitions_for_topic(self.kafka.topic)
        if not found:  # the topic is missing for now (a broker restarting): keep what we have
            return
        assigned = {tp.partition for tp in consumer.assignment()}
        new = sorted(set(found) - assigned)
        if not new:
            return
        consumer.assign([TopicPartition(self.kafka.topic, p) for p in sorted(assigned | set(new))])
        # Every polled record is committed before the next poll, so the stored offsets are
        # exactly where each partition stands; new partitions start at the beginning.
        self._rewind()
        self._log_range().check_start([TopicPartition(self.kafka.topic, p) for p in new])
        INGEST_PARTITIONS.set(len(assigned) + len(new))
        logger.info(
            "ingesting %s partitions %s from %s%s",
            self.kafka.topic,
            new,
            self.bootstrap,
            " (added since start)" if assigned else "",
        )

    def _rewind(self) -> None:
        """Seek every assigned partition to the offset DuckDB says is next."""
        consumer = self._require()
        stored = self.store.stored_offsets(self.kafka.topic)
        for tp in consumer.assignment():
            if tp.partition in stored:
                consumer.seek(tp, stored[tp.partition])
            elif self.kafka.consumer.auto_offset_reset == "latest":
                consumer.seek_to_end(tp)
            else:
                consumer.seek_to_beginning(tp)

    def poll_batch(self, timeout_ms: int = 1000) -> BatchStats:
        """Poll once, decode, and hand the batch to the writer thread, which stores it with
        the next offsets in one transaction; return what the previous batch's write stored.

        Writing batch N (DuckDB releases the GIL) overlaps polling and decoding batch N+1;
        batches still commit one at a time and in order, so a crash re-reads exactly what was
        not committed. Anything that moves offsets (gaps, new partitions) first waits for the
        write in flight. Raises StoreError from the previous write, after rewinding.
        """
        consumer = self._require()
        if time.monotonic() - self._metadata_checked >= self.metadata_refresh_s:
            done = self.flush()
            self._refresh_partitions()
            return done
        try:
            polled = consumer.poll(timeout_ms=timeout_ms)
        except OffsetOutOfRangeError as exc:  # a real Kafka says so; tansu answers empty
            done = self.flush()
            self._log_range().out_of_range(exc.args[0] if exc.args else {})
            return done
        batch = _Batch()
        for records in polled.values():
            for record in records:
                batch.add(record, self._decode)
        done = self.flush()
        # Records of a partition whose log turned out to be another (or shorter) one are
        # dropped here and re-read from the log start: their offsets must not be stored.
        kept = self._log_range().check_after_poll(polled)
        batch.drop({tp.partition for tp in polled if tp not in kept})
        self._update_lag()
        if batch.records:
            # The dead-letter topic is at-least-once (flushed before the commit); the table
            # is exactly-once with the batch.
            self._publish_dead_letters(batch.letters)
            self._pending = (self._writer.submit(self._write, batch), batch)
        return done

    def flush(self) -> BatchStats:
        """Wait for the batch being written, export what it did and return it (empty when
        none). Raises StoreError when it was not stored, after seeking back to the stored
        offsets, so everything after the last commit is read again."""
        if self._pending is None:
            return BatchStats()
        future, batch = self._pending
        self._pending = None
        try:
            result = future.result()
        except StoreError:
            logger.exception("batch not stored; re-reading it from the stored offsets")
            self._rewind()
            raise
        # Rows the store refused are known only now: their topic copy is sent after the
        # commit (a crash in between loses that copy; the table has them).
        self._publish_dead_letters(list(result.refused))
        INGEST_BATCH_SIZE.observe(batch.records)
        batch.count(result)
        letters = len(batch.letters) + len(result.refused)
        return BatchStats(batch.records, result.inserted, result.duplicates, letters, True)

    def _write(self, batch: _Batch) -> BatchResult:
        """The writer thread: one transaction for the batch and its offsets."""
        started = time.perf_counter()
        result = self.store.write_batch(
            batch.queries, batch.interactions, batch.letters, batch.offsets
        )
        INGEST_COMMIT_SECONDS.observe(time.perf_counter() - started)
        INGEST_LAST_COMMIT.set(time.time())
        return result

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
        try:
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
                self._dlq.send(self.kafka.dlq_topic, value=orjson.dumps(body))
            self._dlq.flush(timeout=self.kafka.producer.delivery_timeout_ms / 1000)
        except Exception as exc:  # never fatal: the dead_letters table holds them all
            DEAD_LETTER_PUBLISH_ERRORS.inc(len(letters))
            logger.warning(
                "dead letters not confirmed on %s (%s); they are in the dead_letters table",
                self.kafka.dlq_topic,
                exc,
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

    def _log_range(self) -> LogRange:
        if self._range is None:
            raise EventBusError("The ingestor is not started; call start() first.")
        return self._range

    def close(self) -> None:
        """Finish the batch being written, then close the Kafka clients (the store is the
        caller's)."""
        try:
            self.flush()
        except StoreError:
            logger.warning("the last batch was not stored; the next start re-reads it")
        self._writer.shutdown(wait=True)
        if self._consumer is not None:
            self._consumer.close()
        if self._dlq is not None:
            self._dlq.close(timeout=5)


@dataclass(slots=True)
class _Batch:
    """One poll's records sorted into events and dead letters, with the next offsets."""

    queries: list[Sourced[QueryEvent]] = field(default_factory=list)
    interactions: list[Sourced[InteractionEvent]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    records: int = 0

    def add(self, record: ConsumerRecord, decode: Callable[[ConsumerRecord], AnyEvent]) -> None:
        self.offsets[(record.topic, record.partition)] = record.offset + 1
        self.records += 1
        try:
            event = decode(record)
        except MalformedEventError as exc:
            self.letters.append(_letter(record, exc.code, exc.reason))
            return
        except Exception as exc:  # a bad record must never stop the partition
            logger.warning(
                "record %s[%d]@%d: %r", record.topic, record.partition, record.offset, exc
            )
            self.letters.append(_letter(record, "internal_error", type(exc).__name__))
            return
        where = (record.partition, record.offset, record.topic, record.value)
        if isinstance(event, QueryEvent):
            self.queries.append(Sourced(event, *where))
        else:
            self.interactions.append(Sourced(event, *where))

    def drop(self, partitions: set[int]) -> None:
        """Forget the records of ``partitions`` (they are read again from elsewhere)."""
        if not partitions:
            return
        self.queries = [q for q in self.queries if q.partition not in partitions]
        self.interactions = [i for i in self.interactions if i.partition not in partitions]
        self.letters = [d for d in self.letters if d.partition not in partitions]
        self.offsets = {k: v for k, v in self.offsets.items() if k[1] not in partitions}
        self.records = len(self.queries) + len(self.interactions) + len(self.letters)

    def count(self, result: BatchResult) -> None:
        """Export what the batch did (events refused by the store count as rejected)."""
        refused = {(d.partition, d.offset) for d in result.refused}
        actions: Counter[str] = Counter(
            e.event.action_name for e in self.interactions if (e.partition, e.offset) not in refused
        )
        actions["query"] = sum((q.partition, q.offset) not in refused for q in self.queries)
        for action, n in actions.items():  # one labels() per action, not per event
            EVENTS_INGESTED.labels(action=action).inc(n)
        EVENTS_DUPLICATE.inc(result.duplicates)
        for reason, n in Counter(d.reason_code for d in [*self.letters, *result.refused]).items():
            EVENTS_REJECTED.labels(reason=reason).inc(n)


def _letter(record: ConsumerRecord, code: str, reason: str) -> DeadLetter:
    return DeadLetter(record.topic, record.partition, record.offset, code, reason, record.value)
