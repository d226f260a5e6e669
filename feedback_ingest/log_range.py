"""Keeping the ingest's positions inside the partitions' logs, and recording every gap.

A stored offset can fall outside its partition's log: behind the log start once retention
deleted records the ingest never read, past the log end once the log was truncated or a broker
lost it, or in a log that is not the one the offsets were stored for (the topic was deleted
and created again: a new topic id, KIP-516). Kafka clients "reset" such offsets silently;
here each case is recorded in ``offset_gaps`` (with what is known to be lost), logged at ERROR
and counted in ``flywheel_ingest_offset_gaps_total{kind}`` and
``flywheel_ingest_records_lost_total``.

Where reading resumes: at the log start, in every case. Behind the log start, the log start is
the oldest record that still exists; past the end or in a new log, every record now in the log
is either one never read (a new log) or one read before (a truncated log re-filled), and the
idempotency keys (``event_id``, ``query_id``) drop repeats. Resuming at the log end instead
would skip records that exist, which is the silent loss this module is there to prevent.

Past-the-end is judged by the high watermark of a fetch, not by ``end_offsets``: the embedded
tansu broker under-reports ListOffsets(latest) and answers a fetch past the end with no records
instead of OffsetOutOfRange (``tests/integration/test_kafka_broker.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from feedback_ingest.store import EventStore
from feedback_ingest.store.offsets import OffsetGap, record_gaps, stored_topic_id
from services.metrics import OFFSET_GAPS, RECORDS_LOST

logger = logging.getLogger(__name__)

Polled = Mapping[TopicPartition, list[ConsumerRecord]]


class LogRange:
    """Checks one topic's assigned partitions after each poll and on assignment."""

    def __init__(self, consumer: KafkaConsumer, store: EventStore, topic: str) -> None:
        self.consumer = consumer
        self.store = store
        self.topic = topic
        self._seen_end: dict[int, int] = {}
        """Highest high watermark seen per partition while the log looked whole."""
        self._topic_id: str | None = None

    def check_start(self, partitions: list[TopicPartition]) -> None:
        """On assignment: record stored offsets behind the log start (past the end waits
        for the first fetch, see the module docstring) and a topic that was recreated."""
        gaps, topic_id = self._recreated()
        if gaps:
            self._record(gaps, topic_id)
            return
        stored = self.store.stored_offsets(self.topic)
        known = [tp for tp in partitions if tp.partition in stored]
        starts = self._offsets(self.consumer.beginning_offsets, known)
        self._record(
            [
                self._gap(tp.partition, stored[tp.partition], "behind_log_start", start, None)
                for tp in known
                if (start := starts.get(tp)) is not None and stored[tp.partition] < start
            ],
            topic_id,
        )

    def check_after_poll(self, polled: Polled) -> Polled:
        """Record gaps the last fetch revealed; return ``polled`` without the records of
        those partitions (they are re-read from the log start, their offsets never stored)."""
        gaps, topic_id = self._recreated()
        if not gaps:
            gaps = self._past_end()
        self._record(gaps, topic_id)
        moved = {gap.partition for gap in gaps}
        return {tp: records for tp, records in polled.items() if tp.partition not in moved}

    def out_of_range(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Handle a broker's OffsetOutOfRange for ``offsets`` (partition → fetched offset)."""
        starts = self._offsets(self.consumer.beginning_offsets, offsets)
        ends = self._offsets(self.consumer.end_offsets, offsets)
        gaps = []
        for tp, at in offsets.items():
            start = starts.get(tp, 0)
            kind = "behind_log_start" if at < start else "past_log_end"
            gaps.append(self._gap(tp.partition, at, kind, start, ends.get(tp)))
        self._record(gaps, None)

    # -- detection ----------------------------------------------------------------------------
    def _recreated(self) -> tuple[list[OffsetGap], tuple[str, str] | None]:
        current = _topic_id(self.consumer, self.topic)
        if current is None or current == self._topic_id:
            return [], None
        known = self._topic_id or stored_topic_id(self.store, self.topic)
        self._topic_id = current
        if known == current:
            return [], None
        remember = (self.topic, current)
        if known is None:  # first sight of this topic (or a store older than topic ids)
            return [], remember
        logger.error("topic %s was deleted and created again (id %s, was %s)", *remember, known)
        stored = self.store.stored_offsets(self.topic)
        return [
            self._gap(partition, at, "topic_recreated", 0, None)
            for partition, at in sorted(stored.items())
            if at > 0
        ], remember

    def _past_end(self) -> list[OffsetGap]:
        gaps: list[OffsetGap] = []
        stored: dict[int, int] | None = None
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is None:
                continue
            position = self.consumer.position(tp)
            if position is None or end >= position:
                self._seen_end[tp.partition] = max(end, self._seen_end.get(tp.partition, 0))
                continue
            stored = stored if stored is not None else self.store.stored_offsets(self.topic)
            start = self._offsets(self.consumer.beginning_offsets, [tp]).get(tp, 0)
            at = stored.get(tp.partition, position)
            gaps.append(self._gap(tp.partition, at, "past_log_end", start, end))
        return gaps

    def _gap(self, partition: int, at: int, kind: str, start: int, end: int | None) -> OffsetGap:
        if kind == "behind_log_start":
            lost: int | None = start - at
        else:  # what the ingest saw in the old log beyond its offset: at least that is gone;
            # records appended after its last fetch are unknowable (the broker forgot them)
            seen = self._seen_end.get(partition)
            lost = seen - at if seen is not None and seen > at else None
        return OffsetGap(
            self.topic,
            partition,
            at,
            kind,  # type: ignore[arg-type]
            resumed_at=start,
            log_start=start if kind != "topic_recreated" else None,
            log_end=end,
            records_lost=lost,
        )

    # -- recording ----------------------------------------------------------------------------
    def _record(self, gaps: list[OffsetGap], topic_id: tuple[str, str] | None) -> None:
        if not gaps and topic_id is None:
            return
        record_gaps(self.store, gaps, topic_id)
        for gap in gaps:
            OFFSET_GAPS.labels(kind=gap.kind).inc()
            RECORDS_LOST.inc(gap.records_lost or 0)
            self._seen_end.pop(gap.partition, None)
            logger.error(
                "offset gap (%s) on %s[%d]: stored offset %d, log %s..%s; %s records known "
                "lost; resuming at %d. Recorded in the offset_gaps table.",
                gap.kind,
                gap.topic,
                gap.partition,
                gap.stored_offset,
                "?" if gap.log_start is None else gap.log_start,
                "?" if gap.log_end is None else gap.log_end,
                "unknown" if gap.records_lost is None else gap.records_lost,
                gap.resumed_at,
            )
            self.consumer.seek(TopicPartition(gap.topic, gap.partition), gap.resumed_at)

    @staticmethod
    def _offsets(
        ask: Callable[[list[TopicPartition]], dict[TopicPartition, int]],
        partitions: Iterable[TopicPartition],
    ) -> dict[TopicPartition, int]:
        wanted = list(partitions)
        if not wanted:
            return {}
        try:
            return {tp: offset for tp, offset in ask(wanted).items() if offset is not None}
        except KafkaError as exc:
            logger.warning("could not read log offsets of %s: %s", wanted, exc)
            return {}


def _topic_id(consumer: KafkaConsumer, topic: str) -> str | None:
    """The topic id from the consumer's metadata cache (None before Metadata v10).

    kafka-python 3.0 keeps it in its cluster metadata without a public accessor on the
    consumer; the version is pinned below 3.1 in pyproject.toml."""
    cluster = getattr(getattr(consumer, "_client", None), "cluster", None)
    found = cluster.topic_id(topic) if cluster is not None else None
    return str(found) if found else None
