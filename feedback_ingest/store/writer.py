"""The DuckDB event store: one writing process, one transaction per Kafka poll batch.

Exactly-once into DuckDB (see DESIGN.md, "Events"): a batch's events, dead letters and the next
offset of every partition it came from commit together, so after a crash the consumer seeks to
the stored offsets and re-reads exactly what was not committed; a re-delivered event is ignored
by its primary key (``ON CONFLICT DO NOTHING``) and counted as a duplicate.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import duckdb
import pyarrow as pa

from feedback_ingest.store.connection import connect_writer
from feedback_ingest.store.errors import StoreError, StoreLockedError
from feedback_ingest.store.migrations import migrate
from feedback_ingest.store.rows import DeadLetter, PendingBatch, Sourced
from services.events import InteractionEvent, QueryEvent
from services.ingest_settings import StoreSettings

logger = logging.getLogger(__name__)

_KEYS = {
    "queries": "query_id",
    "interactions": "event_id",
    "dead_letters": "topic, source_partition, source_offset",
}
"""The idempotency key of each table a batch inserts into (a repeat is ignored)."""

_ROW_ERRORS = (duckdb.DataError, duckdb.IntegrityError, duckdb.InvalidInputException)
"""DuckDB errors that one row can cause (a value its column refuses); others are the store's."""

_OPEN: set[Path] = set()
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one :meth:`EventStore.write_batch` stored."""

    inserted: int
    duplicates: int
    dead_letters: int = 0
    refused: tuple[DeadLetter, ...] = ()
    """Events whose rows Arrow or DuckDB refused, stored as dead letters (reason
    ``unstorable``) in the same transaction; the caller publishes and counts them."""


class _RowRefusedError(Exception):
    """The batch insert failed with an error that a single row can cause."""


class EventStore:
    """The read-write handle on ``events.duckdb``; migrates the file to the current schema."""

    def __init__(self, path: Path | str, settings: StoreSettings | None = None) -> None:
        self.path = Path(path).resolve()
        self.settings = settings or StoreSettings()
        with _OPEN_LOCK:
            if self.path in _OPEN:
                raise StoreLockedError(
                    f"this process already has {self.path} open as an EventStore; "
                    "reuse that instance (DuckDB allows one writer per file)."
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.con = connect_writer(self.path)
            _OPEN.add(self.path)
        self._lock = threading.RLock()
        try:
            self.con.execute("SET TimeZone = 'UTC'")
            migrate(self.con, where=str(self.path))
        except BaseException:
            self.close()
            raise

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One DuckDB transaction on the store's connection; rolled back on any exception."""
        with self._lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield self.con
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")

    def write_batch(
        self,
        queries: Sequence[QueryEvent | Sourced[QueryEvent]] = (),
        interactions: Sequence[InteractionEvent | Sourced[InteractionEvent]] = (),
        dead_letters: Sequence[DeadLetter] = (),
        offsets: Mapping[tuple[str, int], int] | None = None,
    ) -> BatchResult:
        """Store a poll batch and the next offset per (topic, partition), all in one transaction.

        An event whose row Arrow cannot build or DuckDB refuses is stored as a dead letter
        instead (reason ``unstorable``, listed in :attr:`BatchResult.refused`) and the rest of
        the batch as usual: one poison record never stops a partition.

        Raises:
            StoreError: DuckDB refused the batch; nothing of it was stored, so the consumer
                can re-read it from :meth:`stored_offsets`.
        """
        batch = PendingBatch.of(queries, interactions, dead_letters)
        raw_max = self.settings.dead_letter_raw_max_bytes
        with self._lock:  # registered names are per connection: one batch at a time
            tables = batch.tables(raw_max)
            try:
                counts = self._write(tables, offsets or {})
            except _RowRefusedError as exc:
                refused = self._probe(tables)
                if not refused:  # no row fails alone: the store itself is failing
                    raise self._failed(tables, exc.__cause__) from exc.__cause__
                for table, rows in refused.items():
                    batch.refuse(table, rows)
                tables = batch.tables(raw_max)
                try:
                    counts = self._write(tables, offsets or {})
                except _RowRefusedError as again:
                    raise self._failed(tables, again.__cause__) from again.__cause__
        inserted = counts["queries"] + counts["interactions"]
        result = BatchResult(
            inserted, batch.events - inserted, counts["dead_letters"], tuple(batch.refused)
        )
        logger.debug("stored batch: %s", result)
        return result

    def _write(
        self, tables: dict[str, pa.Table | None], offsets: Mapping[tuple[str, int], int]
    ) -> dict[str, int]:
        present = [name for name, table in tables.items() if table is not None]
        try:
            # Registered inside the transaction: BEGIN closes any result a reader of
            # ``con`` left open, which would make register() fail.
            with self.transaction() as con:
                for name in present:
                    con.register(f"batch_{name}", tables[name])
                counts = {
                    name: self._insert(con, name) if name in present else 0 for name in tables
                }
                self._upsert_offsets(con, offsets)
        except _ROW_ERRORS as exc:
            raise _RowRefusedError from exc
        except duckdb.Error as exc:
            raise self._failed(tables, exc) from exc
        finally:
            self._unregister(present)
        return counts

    def _unregister(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(duckdb.Error):  # never registered, or the store is gone
                self.con.unregister(f"batch_{name}")

    def _probe(self, tables: dict[str, pa.Table | None]) -> dict[str, dict[int, str]]:
        """Insert each row alone, rolled back, and return those DuckDB refuses (index → why).

        Runs only after a batch failed with a row error, so its cost (a transaction per row)
        is paid for poison batches alone."""
        refused: dict[str, dict[int, str]] = {}
        for name, table in tables.items():
            for index in range(0 if table is None else table.num_rows):
                assert table is not None
                self.con.execute("BEGIN TRANSACTION")
                self.con.register(f"batch_{name}", table.slice(index, 1))
                try:
                    self._insert(self.con, name)
                except _ROW_ERRORS as exc:
                    refused.setdefault(name, {})[index] = f"row not storable: {exc}"
                finally:
                    self.con.execute("ROLLBACK")
                    self._unregister([name])
        return refused

    def _failed(self, tables: dict[str, pa.Table | None], exc: BaseException | None) -> StoreError:
        rows = {name: 0 if t is None else t.num_rows for name, t in tables.items()}
        return StoreError(
            f"could not write a batch of {rows['queries']} queries, {rows['interactions']} "
            f"interactions and {rows['dead_letters']} dead letters to {self.path}: {exc}. "
            "Nothing of the batch was stored; the consumer re-reads it from the stored offsets."
        )

    def stored_offsets(self, topic: str) -> dict[int, int]:
        """The next offset to read per partition of ``topic`` (empty before the first batch)."""
        with self._lock:
            rows = self.con.execute(
                "SELECT partition, next_offset FROM consumer_offsets WHERE topic = ?", [topic]
            ).fetchall()
        return {int(partition): int(offset) for partition, offset in rows}

    def close(self) -> None:
        """Close the connection and release the file lock (idempotent)."""
        with _OPEN_LOCK:
            if self.path in _OPEN:
                self.con.close()
                _OPEN.discard(self.path)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, name: str) -> int:
        row = con.execute(
            f"INSERT INTO {name} BY NAME SELECT * FROM batch_{name} "
            f"ON CONFLICT ({_KEYS[name]}) DO NOTHING"
        ).fetchall()
        return int(row[0][0]) if row else 0

    @staticmethod
    def _upsert_offsets(
        con: duckdb.DuckDBPyConnection, offsets: Mapping[tuple[str, int], int]
    ) -> None:
        if not offsets:
            return
        con.executemany(
            "INSERT INTO consumer_offsets VALUES (?, ?, ?, now()) "
            "ON CONFLICT (topic, partition) DO UPDATE "
            "SET next_offset = excluded.next_offset, updated_at = excluded.updated_at",
            [[topic, partition, offset] for (topic, partition), offset in offsets.items()],
        )
