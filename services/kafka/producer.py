"""The Kafka event sink of encoder_server: bounded, non-blocking, reconnecting.

Searches must never wait on Kafka. Events go into a bounded in-process backlog that a
background thread drains into a ``KafkaProducer`` (acks=all, retries). If the broker is
down, the backlog grows (visible in ``/readyz`` and ``flywheel_event_backlog``) and is
re-sent once it is back; when the backlog is full, new events are refused and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from kafka import KafkaProducer
from kafka.errors import KafkaError

from services.events import AnyEvent, PublishOutcome, event_id, event_key
from services.kafka.broker import ensure_topics
from services.kafka.config import KafkaSettings
from services.metrics import EVENT_BACKLOG, EVENT_SINK_ERRORS, EVENTS_PRODUCED

logger = logging.getLogger(__name__)

RECONNECT_S = 1.0


@dataclass(slots=True)
class _Record:
    key: bytes
    value: bytes
    event_id: str
    kind: str
    acked: threading.Event = field(default_factory=threading.Event)


class KafkaEventSink:
    """An :class:`~services.events.EventSink` producing to the ``flywheel.events`` topic."""

    def __init__(self, settings: KafkaSettings, bootstrap: str | None = None) -> None:
        self.settings = settings
        self.bootstrap = bootstrap or settings.bootstrap()
        self._queue: deque[_Record] = deque()
        self._inflight = 0
        self._cond = threading.Condition()
        self._closed = False
        self._producer: KafkaProducer | None = None
        self._thread = threading.Thread(target=self._run, name="kafka-sink", daemon=True)
        self._thread.start()

    # -- EventSink ----------------------------------------------------------------------------
    def emit(self, event: AnyEvent) -> bool:
        """Queue one event; False (and counted) when the backlog is full."""
        return self._enqueue(event) is not None

    def publish(self, events: Sequence[AnyEvent], timeout_s: float) -> PublishOutcome:
        """Queue ``events`` and wait up to ``timeout_s`` for Kafka's acknowledgements."""
        outcome = PublishOutcome()
        queued: list[_Record] = []
        for event in events:
            record = self._enqueue(event)
            if record is None:
                outcome.refused.append(event_id(event))
            else:
                queued.append(record)
        deadline = time.monotonic() + timeout_s
        for record in queued:
            done = record.acked.wait(max(0.0, deadline - time.monotonic()))
            (outcome.accepted if done else outcome.pending).append(record.event_id)
        return outcome

    def backlog(self) -> int:
        """Events queued or in flight, not yet acknowledged."""
        with self._cond:
            return len(self._queue) + self._inflight

    @property
    def connected(self) -> bool:
        """Whether a producer is connected to the cluster."""
        return self._producer is not None

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the sender and flush what Kafka accepts within ``timeout_s``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout_s)
        if self._producer is not None:
            try:
                self._producer.flush(timeout=timeout_s)
            except KafkaError:
                logger.warning("could not flush the event producer before closing")
            self._producer.close(timeout=timeout_s)
        lost = self.backlog()
        if lost:
            logger.warning("closing with %d events not acknowledged by Kafka", lost)

    # -- internals ----------------------------------------------------------------------------
    def _enqueue(self, event: AnyEvent) -> _Record | None:
        record = _Record(
            event_key(event), event.model_dump_json().encode(), event_id(event), event.type
        )
        with self._cond:
            if (
                self._closed
                or len(self._queue) + self._inflight >= self.settings.producer.max_pending
            ):
                EVENT_SINK_ERRORS.labels(reason="backlog_full").inc()
                return None
            self._queue.append(record)
            EVENT_BACKLOG.set(len(self._queue) + self._inflight)
            self._cond.notify()
        return record

    def _connect(self) -> KafkaProducer | None:
        try:
            ensure_topics(
                self.bootstrap,
                self.settings.topics(),
                self.settings.replication_factor,
                timeout_s=self.settings.producer.bootstrap_timeout_ms / 1000,
            )
            return KafkaProducer(**self.settings.producer_config(self.bootstrap))
        except Exception as exc:  # any failure to reach Kafka: retry later, keep serving
            logger.warning(
                "Kafka at %s unavailable (%s); events wait in the backlog", self.bootstrap, exc
            )
            return None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._queue:
                    self._cond.wait()
                if self._closed:
                    return
            if self._producer is None:
                self._producer = self._connect()
            if self._producer is None:
                with self._cond:  # back off, but wake at once on close()
                    self._cond.wait(timeout=RECONNECT_S)
                continue
            self._drain(self._producer)

    def _drain(self, producer: KafkaProducer) -> None:
        while True:
            with self._cond:
                if not self._queue or self._closed:
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
        with self._cond:
            self._inflight -= 1
            EVENT_BACKLOG.set(len(self._queue) + self._inflight)
        EVENTS_PRODUCED.labels(type=record.kind).inc()
        record.acked.set()

    def _on_error(self, record: _Record, exc: BaseException) -> None:
        self._retry(record, exc)

    def _retry(self, record: _Record, exc: BaseException) -> None:
        EVENT_SINK_ERRORS.labels(reason="delivery_failed").inc()
        logger.debug("re-queueing event %s after %s", record.event_id, exc)
        with self._cond:
            self._inflight -= 1
            self._queue.appendleft(record)
            self._cond.notify()
