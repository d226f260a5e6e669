"""Columnar batches: validated events become Arrow tables that DuckDB inserts in one statement.

DuckDB's ``executemany`` runs one INSERT per row; inserting from a registered Arrow table is
a single vectorised scan, which keeps a 5,000-event poll batch in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

import orjson
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
    """An event with the Kafka partition and offset it was read from (None outside Kafka),
    and the record's topic and raw value, for its dead letter should its row be refused."""

    event: E
    partition: int | None = None
    offset: int | None = None
    topic: str = ""
    raw: bytes | None = None


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


def _json(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


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
        [_json(e.filters) for e in events],
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


def _text(value: str) -> str:
    """``value`` as valid UTF-8 (a reason may quote a lone surrogate from the record)."""
    return value.encode("utf-8", "replace").decode("utf-8")


def dead_letter_table(letters: Sequence[DeadLetter], max_raw_bytes: int) -> pa.Table:
    """Arrow rows for ``dead_letters``, each raw payload cut to ``max_raw_bytes``."""
    raws = [d.raw.encode("utf-8", "replace") if isinstance(d.raw, str) else d.raw for d in letters]
    columns = [
        [_text(d.topic) for d in letters],
        [d.partition for d in letters],
        [d.offset for d in letters],
        [d.reason_code for d in letters],
        [_text(d.reason) for d in letters],
        [None if r is None else r[:max_raw_bytes] for r in raws],
        [r is not None and len(r) > max_raw_bytes for r in raws],
        [d.received_at for d in letters],
    ]
    return pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, DEAD_LETTER_SCHEMA, strict=True)],
        schema=DEAD_LETTER_SCHEMA,
    )


T = TypeVar("T")


def build_each(
    build: Callable[[Sequence[T]], pa.Table], items: Sequence[T]
) -> tuple[pa.Table | None, list[T], list[tuple[T, str]]]:
    """``build(items)``, or when that fails, the table of the items that build alone.

    Returns (table or None when nothing builds, the items in the table, the items refused
    with why). One record that Arrow cannot take (an integer beyond its column, text it cannot
    encode) must cost only itself, never the batch around it.
    """
    if not items:
        return None, [], []
    try:
        return build(items), list(items), []
    except Exception:  # any failure: find the records that cause it
        pass
    good: list[T] = []
    refused: list[tuple[T, str]] = []
    for item in items:
        try:
            build([item])
        except Exception as exc:  # refused records become dead letters
            refused.append((item, f"row not storable: {type(exc).__name__}: {exc}"))
        else:
            good.append(item)
    return (build(good) if good else None), good, refused


def refused_letter(item: Sourced[E], why: str) -> DeadLetter:
    """The dead letter of an event whose row was refused (reason ``unstorable``)."""
    raw = item.raw
    if raw is None:  # not read from Kafka: keep what can be kept of the event
        try:
            raw = item.event.model_dump_json().encode()
        except ValueError:
            raw = None
    return DeadLetter(item.topic, item.partition, item.offset, "unstorable", why, raw)


@dataclass(slots=True)
class PendingBatch:
    """The rows of one batch, from which refused records are moved to the dead letters."""

    queries: list[Sourced[QueryEvent]]
    interactions: list[Sourced[InteractionEvent]]
    letters: list[DeadLetter]
    refused: list[DeadLetter] = field(default_factory=list)
    built: dict[str, pa.Table | None] | None = None
    """The event tables as last built (None after :meth:`refuse` changed the rows)."""

    @classmethod
    def of(
        cls,
        queries: Sequence[QueryEvent | Sourced[QueryEvent]],
        interactions: Sequence[InteractionEvent | Sourced[InteractionEvent]],
        letters: Sequence[DeadLetter],
    ) -> PendingBatch:
        """Unwrap the events and refuse at once those whose Arrow rows cannot be built."""
        q_table, q_ok, q_bad = build_each(query_table, _unwrap(queries))
        i_table, i_ok, i_bad = build_each(interaction_table, _unwrap(interactions))
        refused = [refused_letter(q, why) for q, why in q_bad]
        refused += [refused_letter(i, why) for i, why in i_bad]
        return cls(
            q_ok, i_ok, list(letters), refused, {"queries": q_table, "interactions": i_table}
        )

    def tables(self, max_raw_bytes: int) -> dict[str, pa.Table | None]:
        """Arrow tables per target table (None when empty); refused records are letters."""
        letters = self.letters + self.refused
        built = self.built or {
            "queries": query_table(self.queries) if self.queries else None,
            "interactions": interaction_table(self.interactions) if self.interactions else None,
        }
        self.built = built
        return {
            **built,
            "dead_letters": dead_letter_table(letters, max_raw_bytes) if letters else None,
        }

    def refuse(self, table: str, rows: dict[int, str]) -> None:
        """Move ``rows`` (index → why) of ``table`` out of the batch, into the dead letters."""
        self.built = None
        if table == "queries":
            self.refused += [refused_letter(self.queries[i], why) for i, why in rows.items()]
            self.queries = [q for i, q in enumerate(self.queries) if i not in rows]
        elif table == "interactions":
            self.refused += [refused_letter(self.interactions[i], why) for i, why in rows.items()]
            self.interactions = [e for i, e in enumerate(self.interactions) if i not in rows]
        else:  # a letter refused itself: keep where it came from and why, without the payload
            letters = self.letters + self.refused
            kept = [
                DeadLetter(d.topic, d.partition, d.offset, "unstorable", rows[i])
                if i in rows
                else d
                for i, d in enumerate(letters)
            ]
            self.letters, self.refused = kept[: len(self.letters)], kept[len(self.letters) :]

    @property
    def events(self) -> int:
        """Events (queries and interactions) still in the batch."""
        return len(self.queries) + len(self.interactions)
