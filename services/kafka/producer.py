"""The Kafka event sink of encoder_server: durable, bounded, non-blocking, reconnecting.

Searches never wait on Kafka, and an accepted event is never lost. Every event goes to a
local spool on disk (:mod:`services.kafka.spool`): a writer thread appends and fsyncs in
groups, a sender thread produces to Kafka (acks=all) and releases each spool entry once Kafka
acknowledged it. ``publish`` (POST /events) returns once its events are fsynced, and waits a
little longer for Kafka's acknowledgement when Kafka is reachable; ``emit`` (served lists)
returns at once, its event on disk within milliseconds. When the broker is down the spool
grows (``/readyz``, ``flywheel_event_backlog``, ``flywheel_event_spool_bytes``) and is sent
once it is back; a full spool or a closing sink refuses new events (HTTP 503). Events left at
a stop or crash are replayed on the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaProducer
from kafka.errors import KafkaError

from services.events import AnyEvent, PublishOutcome, event_id, event_key
from services.kafka.broker import ensure_topics
from services.kafka.config import KafkaSettings
from services.kafka.spool import Spool, SpoolEntry
from services.metrics import (
    EVENT_BACKLOG,
    EVENT_SINK_ERRORS,
    EVENT_SPOOL_BYTES,
    EVENTS_PRODUCED,
    EVENTS_REPLAYED,
)

logger = logging.getLogger(__name__)

RECONNECT_S = 1.0
RECONNECT_AFTER_FAILURES = 3
"""Consecutive delivery failures after which the producer is rebuilt (and the topics ensured:
a broker that lost its data comes back without them)."""


@dataclass(slots=True)
class _Record:
    key: bytes
    value: bytes
    event_id: str
    kind: str
    entry: SpoolEntry | None = None
    failed: bool = False
    durable: threading.Event = field(default_factory=threading.Event)
    acked: threading.Event = field(default_factory=threading.Event)


class KafkaEventSink:
    """An :class:`~services.events.EventSink` producing to the ``flywheel.events`` topic
    through the durable spool in ``spool_dir``."""

    def __init__(
        self, settings: KafkaSettings, spool_dir: Path, bootstrap: str | None = None
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap or settings.bootstrap()
        self._spool = Spool(spool_dir, settings.spool.segment_bytes)
        self._cond = threading.Condition()
        self._incoming: list[_Record] = []  # accepted, not yet on disk
        self._queue: deque[_Record] = deque()  # on disk, not yet sent
        self._inflight = 0
        self._pending_bytes = 0
        self._closing = False
        self._stopped = False
        self._failures = 0
        self._unreachable = False
        self._producer: KafkaProducer | None = None
        for entry in self._spool.replayed():
            record = _Record(entry.key, entry.value, "", "replayed", entry)
            record.durable.set()
            self._queue.append(record)
            self._pending_bytes += len(entry.value)
        EVENTS_REPLAYED.inc(len(self._queue))
        self._writer = threading.Thread(target=self._write_loop, name="event-spool", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="kafka-sink", daemon=True)
        self._writer.start()
        self._sender.start()
        self._export()

    # -- EventSink ----------------------------------------------------------------------------
    def emit(self, event: AnyEvent) -> bool:
        """Queue one event for the spool without waiting; False (and counted) when refused."""
        return bool(self._enqueue([event]))

    def publish(self, events: Sequence[AnyEvent], timeout_s: float) -> PublishOutcome:
        """Spool ``events`` durably, then wait up to ``timeout_s`` for Kafka's
        acknowledgements while Kafka is reachable. ``accepted``: acknowledged by Kafka;
        ``pending``: fsynced in the spool, sent later; ``refused``: spool full, closing, or
        the disk failed (the client retries)."""
        outcome = PublishOutcome()
        queued = self._enqueue(events)
        if not queued:
            outcome.refused = [event_id(e) for e in events]
            return outcome
        deadline = time.monotonic() + max(timeout_s, self.settings.spool.sync_timeout_s)
        for record in queued:
            record.durable.wait(max(0.0, deadline - time.monotonic()))
        # While Kafka is known to be unreachable nobody waits: the spool already has them.
        ack_deadline = time.monotonic() + (0.0 if self._unreachable else timeout_s)
        for record in queued:
            if record.failed or not record.durable.is_set():
                outcome.refused.append(record.event_id)
            elif record.acked.wait(max(0.0, ack_deadline - time.monotonic())):
                outcome.accepted.append(record.event_id)
            else:
                outcome.pending.append(record.event_id)
        return outcome

    def backlog(self) -> int:
        """Events accepted and not yet acknowledged by Kafka (in memory or in the spool)."""
        with self._cond:
            return len(self._incoming) + len(self._queue) + self._inflight

    @property
    def connected(self) -> bool:
        """Whether a producer is connected and delivering."""
        return self._producer is not None and not self._unreachable

    def close(self, timeout_s: float = 5.0) -> None:
        """Refuse new events, put every accepted one on disk, and send what Kafka takes
        within ``timeout_s``; the rest stays in the spool for the next start."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._writer.join(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (self._queue or self._inflight) and time.monotonic() < deadline:
                if self._unreachable:  # the spool keeps them for the next start
                    break
                self._cond.wait(0.05)
            self._stopped = True
            self._cond.notify_all()
        self._sender.join(timeout=timeout_s)
        if self._producer is not None:
            try:
                self._producer.close(timeout=min(timeout_s, 1.0))
            except KafkaError:
                logger.warning("could not close the event producer cleanly")
        self._spool.close()
        left = self.backlog()
        if left:
            logger.warning(
                "closing with %d events not acknowledged by Kafka; they stay in the spool %s "
                "and are sent on the next start",
                left,
                self._spool.folder,
            )

    # -- accepting ----------------------------------------------------------------------------
    def _enqueue(self, events: Sequence[AnyEvent]) -> list[_Record]:
        records = [
            _Record(event_key(e), e.model_dump_json().encode(), event_id(e), e.type) for e in events
        ]
        size = sum(len(r.value) for r in records)
        limits = self.settings.spool
        with self._cond:
            if self._closing:
                EVENT_SINK_ERRORS.labels(reason="closing").inc(len(records))
                return []
            count = len(self._incoming) + len(self._queue) + self._inflight
            if (
                count + len(records) > limits.max_events
                or self._pending_bytes + size > limits.max_bytes
            ):
                EVENT_SINK_ERRORS.labels(reason="backlog_full").inc(len(records))
                return []
            self._incoming += records
            self._pending_bytes += size
            self._cond.notify_all()
        return records

    def _write_loop(self) -> None:
        """Append what arrived since the last round and fsync once (group commit)."""
        while True:
            with self._cond:
                while not self._incoming and not self._closing:
                    self._cond.wait()
                batch, self._incoming = self._incoming, []
                if not batch:
                    return  # closing, and everything accepted is on disk
            try:
                entries = self._spool.append([(r.key, r.value) for r in batch])
                self._spool.sync()
            except OSError as exc:
                logger.error("event spool write failed (%s); refusing these events", exc)
                EVENT_SINK_ERRORS.labels(reason="spool_write_failed").inc(len(batch))
                with self._cond:
                    self._pending_bytes -= sum(len(r.value) for r in batch)
                for record in batch:
                    record.failed = True
                    record.durable.set()
                continue
            with self._cond:
                for record, entry in zip(batch, entries, strict=True):
                    record.entry = entry
                    record.durable.set()
                self._queue.extend(batch)
                self._cond.notify_all()
            self._export()

    # -- sending ------------------------------------------------------------------------------
    def _connect(self) -> KafkaProducer | None:
        try:
            ensure_topics(
                self.bootstrap,
                self.settings.topics(),
                self.settings.replication_factor,
                timeout_s=self.settings.producer.bootstrap_timeout_ms / 1000,
                security=self.settings.security_config(),
            )
            return KafkaProducer(**self.settings.producer_config(self.bootstrap))
        except Exception as exc:  # any failure to reach Kafka: retry later, keep serving
            logger.warning(
                "Kafka at %s unavailable (%s); events wait in the spool", self.bootstrap, exc
            )
            return None

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and not self._queue:
                    self._cond.wait()
                if self._stopped:
                    return
            if self._producer is not None and self._failures >= RECONNECT_AFTER_FAILURES:
                self._reset_producer()
            if self._producer is None:
                self._producer = self._connect()
                self._failures = 0
                self._unreachable = self._producer is None
            if self._producer is None:
                with self._cond:  # back off, but wake at once on close()
                    self._cond.wait(timeout=RECONNECT_S)
                continue
            self._drain(self._producer)

    def _reset_producer(self) -> None:
        producer, self._producer = self._producer, None
        logger.warning("%d deliveries failed in a row; reconnecting to Kafka", self._failures)
        try:
            if producer is not None:
                producer.close(timeout=0)
        except KafkaError:
            pass

    def _drain(self, producer: KafkaProducer) -> None:
        while True:
            with self._cond:
                if not self._queue or self._stopped:
                    return
                if self._failures and self._inflight:
                    # Probing a broker that just failed: one record at a time.
                    self._cond.wait(timeout=RECONNECT_S)
                    return
                record = self._queue.popleft()
                self._inflight += 1
            try:
                future = producer.send(self.settings.topic, key=record.key, value=record.value)
            except KafkaError as exc:
                self._retry(record, exc)
                with self._cond:
                    self._cond.wait(timeout=RECONNECT_S)
                return
            future.add_callback(self._on_ack, record)
            future.add_errback(self._on_error, record)

    def _on_ack(self, record: _Record, _metadata: object) -> None:
        if record.entry is not None:
            self._spool.ack(record.entry)
        with self._cond:
            self._inflight -= 1
            self._pending_bytes -= len(record.value)
            self._failures = 0
            self._unreachable = False
            self._cond.notify_all()
        EVENTS_PRODUCED.labels(type=record.kind).inc()
        record.acked.set()
        self._export()

    def _on_error(self, record: _Record, exc: BaseException) -> None:
        self._retry(record, exc)

    def _retry(self, record: _Record, exc: BaseException) -> None:
        EVENT_SINK_ERRORS.labels(reason="delivery_failed").inc()
        logger.debug("re-queueing event %s after %s", record.event_id, exc)
        with self._cond:
            self._inflight -= 1
            self._failures += 1
            self._unreachable = self._failures >= RECONNECT_AFTER_FAILURES
            self._queue.appendleft(record)
            self._cond.notify_all()

    def _export(self) -> None:
        EVENT_BACKLOG.set(self.backlog())
        EVENT_SPOOL_BYTES.set(self._spool.size)
