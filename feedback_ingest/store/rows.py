"""Columnar batches: validated events become Arrow tables that DuckDB inserts in one statement.

DuckDB's ``executemany`` runs one INSERT per row; inserting from a registered Arrow table is
a single vectorised scan, which keeps a 5,000-event poll batch in milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

import pyarrow as pa

from services.datasets.protocol import normalise_query
from services.events import InteractionEvent, QueryEvent

E = TypeVar("E", QueryEvent, InteractionEvent)

_TS = pa.timestamp("us", tz="UTC")

QUERY_SCHEMA = pa.schema(
    [
        ("query_id", pa.string()),
        ("ts", _TS),
        ("user_query", pa.string()),
        ("norm_query", pa.string()),
        ("session_id", pa.string()),
        ("client_id", pa.string()),
        ("model_version", pa.string()),
        ("arm", pa.string()),
        ("mode", pa.string()),
        ("page", pa.int32()),
        ("result_offset", pa.int32()),
        ("client_key", pa.string()),
        ("filters", pa.string()),
        ("results", pa.list_(pa.string())),
        ("teams", pa.list_(pa.string())),
        ("control_version", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
    ]
)

INTERACTION_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("query_id", pa.string()),
        ("action", pa.string()),
        ("product_id", pa.string()),
        ("position", pa.int32()),
        ("session_id", pa.string()),
        ("client_id", pa.string()),
        ("ts", _TS),
        ("model_version", pa.string()),
        ("arm", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
    ]
)

DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
        ("reason_code", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.binary()),
        ("raw_truncated", pa.bool_()),
        ("received_at", _TS),
    ]
)


@dataclass(frozen=True, slots=True)
class Sourced(Generic[E]):
    """An event with the Kafka partition and offset it was read from (None outside Kafka)."""

    event: E
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be stored as an event, with why (``reason_code`` is a label)."""

    topic: str
    partition: int | None
    offset: int | None
    reason_code: str
    reason: str
    raw: bytes | str | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _unwrap(items: Iterable[E | Sourced[E]]) -> list[Sourced[E]]:
    return [item if isinstance(item, Sourced) else Sourced(item) for item in items]


def query_table(items: Sequence[QueryEvent | Sourced[QueryEvent]]) -> pa.Table:
    """Arrow rows for the ``queries`` table (``norm_query`` and JSON ``filters`` filled in)."""
    rows = _unwrap(items)
    events = [r.event for r in rows]
    columns = [
        [e.query_id for e in events],
        [e.timestamp for e in events],
        [e.user_query for e in events],
        [normalise_query(e.user_query) for e in events],
        [e.session_id for e in events],
        [e.client_id for e in events],
        [e.model_version for e in events],
        [e.arm for e in events],
        [e.mode for e in events],
        [e.page for e in events],
        [e.offset for e in events],
        [e.client_key for e in events],
        [json.dumps(e.filters, sort_keys=True, default=str) for e in events],
        [e.results for e in events],
        [e.teams for e in events],
        [e.control_version for e in events],
        [r.partition for r in rows],
        [r.offset for r in rows],
    ]
    return pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, QUERY_SCHEMA, strict=True)],
        schema=QUERY_SCHEMA,
    )


def interaction_table(items: Sequence[InteractionEvent | Sourced[InteractionEvent]]) -> pa.Table:
    """Arrow rows for the ``interactions`` table."""
    rows = _unwrap(items)
    events = [r.event for r in rows]
    columns = [
        [e.event_id for e in events],
        [e.query_id for e in events],
        [e.action_name for e in events],
        [e.object_id for e in events],
        [e.position for e in events],
        [e.session_id for e in events],
        [e.client_id for e in events],
        [e.timestamp for e in events],
        [e.model_version for e in events],
        [e.arm for e in events],
        [r.partition for r in rows],
        [r.offset for r in rows],
    ]
    return pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, INTERACTION_SCHEMA, strict=True)],
        schema=INTERACTION_SCHEMA,
    )


def dead_letter_table(letters: Sequence[DeadLetter], max_raw_bytes: int) -> pa.Table:
    """Arrow rows for ``dead_letters``, each raw payload cut to ``max_raw_bytes``."""
    raws = [d.raw.encode("utf-8", "replace") if isinstance(d.raw, str) else d.raw for d in letters]
    columns = [
        [d.topic for d in letters],
        [d.partition for d in letters],
        [d.offset for d in letters],
        [d.reason_code for d in letters],
        [d.reason for d in letters],
        [None if r is None else r[:max_raw_bytes] for r in raws],
        [r is not None and len(r) > max_raw_bytes for r in raws],
        [d.received_at for d in letters],
    ]
    return pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, DEAD_LETTER_SCHEMA, strict=True)],
        schema=DEAD_LETTER_SCHEMA,
    )
