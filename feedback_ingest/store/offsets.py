"""Offset gaps: stored offsets that fell outside their partition's log, recorded with the move.

A gap and the partition's new next offset commit in one transaction, so a crash right after
detecting a gap neither records it twice nor loses where the ingest resumed. ``topic_ids``
keeps the id (KIP-516) of the topic the stored offsets belong to: a topic deleted and created
again (a broker that lost its data, an operator's mistake) starts a new log at offset 0 whose
offsets mean nothing for the old one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from feedback_ingest.store.writer import EventStore

logger = logging.getLogger(__name__)

GapKind = Literal["behind_log_start", "past_log_end", "topic_recreated"]
GAP_KINDS: tuple[GapKind, ...] = ("behind_log_start", "past_log_end", "topic_recreated")


@dataclass(frozen=True, slots=True)
class OffsetGap:
    """A partition whose stored offset was outside its log, and where the ingest resumed."""

    topic: str
    partition: int
    stored_offset: int
    kind: GapKind
    resumed_at: int
    log_start: int | None = None
    log_end: int | None = None
    records_lost: int | None = None
    """Records known to be gone: exact behind the log start; past the end or in a recreated
    topic, a lower bound (records the ingest saw in the old log beyond its offset), or None
    when it saw none: what the broker had not yet delivered is unknowable to the ingest."""
    detected_at: datetime | None = None


def record_gaps(
    store: EventStore, gaps: Sequence[OffsetGap], topic_id: tuple[str, str] | None = None
) -> None:
    """Store ``gaps``, move each partition's next offset to where it resumes and, when given,
    remember the (topic, topic id) now read — all in one transaction."""
    with store.transaction() as con:
        for gap in gaps:
            con.execute(
                "INSERT INTO offset_gaps (topic, partition, stored_offset, log_start, log_end, "
                "kind, records_lost, resumed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    gap.topic,
                    gap.partition,
                    gap.stored_offset,
                    gap.log_start,
                    gap.log_end,
                    gap.kind,
                    gap.records_lost,
                    gap.resumed_at,
                ],
            ).fetchall()
            con.execute(
                "INSERT INTO consumer_offsets VALUES (?, ?, ?, now()) "
                "ON CONFLICT (topic, partition) DO UPDATE "
                "SET next_offset = excluded.next_offset, updated_at = excluded.updated_at",
                [gap.topic, gap.partition, gap.resumed_at],
            ).fetchall()
        if topic_id is not None:
            con.execute(
                "INSERT INTO topic_ids VALUES (?, ?, now()) ON CONFLICT (topic) DO UPDATE "
                "SET topic_id = excluded.topic_id, seen_at = excluded.seen_at",
                list(topic_id),
            ).fetchall()


def stored_topic_id(store: EventStore, topic: str) -> str | None:
    """The id ``topic`` had when the stored offsets were written (None: not known yet)."""
    with store.transaction() as con:
        rows = con.execute("SELECT topic_id FROM topic_ids WHERE topic = ?", [topic]).fetchall()
    return str(rows[0][0]) if rows else None


def offset_gaps(store: EventStore, topic: str | None = None) -> list[OffsetGap]:
    """Every recorded gap (of ``topic``), oldest first."""
    with store.transaction() as con:
        rows = con.execute(
            "SELECT topic, partition, stored_offset, kind, resumed_at, log_start, log_end, "
            "records_lost, detected_at FROM offset_gaps "
            "WHERE ? IS NULL OR topic = ? ORDER BY id",
            [topic, topic],
        ).fetchall()
    return [OffsetGap(*row) for row in rows]
