"""The Parquet snapshots feedback_ingest writes: the retrainer's and the canary controller's only
view of the events, and the one place that knows how they are laid out and read.

Layout: ``exports/snapshot-<UTC timestamp>/`` folders, each complete with ``manifest.json``, and
an ``exports/latest`` file naming the newest one (replaced atomically by the writer). A
snapshot's manifest lists, per table of :data:`SNAPSHOT_TABLES`, the Parquet files whose union
is the table (format 2): files under ``exports/parts/`` that snapshots share, split by the UTC
day of ``ts`` for the tables in :data:`PARTITIONED` (hive-style ``day=YYYY-MM-DD`` folders) and
named by their content, so a snapshot writes only the days that changed; and, for the raw
events past the retention horizon, the archive's files. Format 1 snapshots (one file per table
in the folder) are still read. Readers open a :class:`Snapshot` and query the tables by name
(:meth:`Snapshot.fetch`) or through the typed helpers; nothing else builds a snapshot path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import duckdb

LATEST = "latest"
PREFIX = "snapshot-"
MANIFEST = "manifest.json"
PARTS = "parts"
"""The folder of the exports holding the Parquet files snapshots share."""
SNAPSHOT_REQUEST = ".snapshot-request"
"""A file in the exports folder by which any process asks the running ingest for a snapshot."""


class Table(StrEnum):
    """The tables a snapshot holds (and the DuckDB tables they are copied from)."""

    QUERIES = "queries"
    INTERACTIONS = "interactions"
    JUDGMENTS = "judgments"
    QUERY_PRODUCT_STATS = "query_product_stats"
    TRAINING_PAIRS = "training_pairs"
    PROPENSITIES = "propensities"
    ONLINE_METRICS = "online_metrics"
    ONLINE_METRICS_BY_ARM = "online_metrics_by_arm"
    INTERLEAVING_WINS = "interleaving_wins"


SNAPSHOT_TABLES: tuple[Table, ...] = tuple(Table)
"""Every table, in export order."""

PARTITIONED: frozenset[Table] = frozenset(
    {Table.QUERIES, Table.INTERACTIONS, Table.JUDGMENTS, Table.ONLINE_METRICS}
)
"""Tables split into one file per UTC day of their ``ts`` column."""


def snapshot_folders(exports_dir: Path) -> list[Path]:
    """Snapshot folders, oldest first (complete or not)."""
    return sorted(d for d in exports_dir.glob(f"{PREFIX}*") if d.is_dir())


def latest_snapshot(exports_dir: Path) -> Path | None:
    """The newest complete snapshot: the one ``latest`` names, else the newest with a manifest."""
    pointer = exports_dir / LATEST
    if pointer.is_file():
        named = exports_dir / pointer.read_text(encoding="utf-8").strip()
        if (named / MANIFEST).is_file():
            return named
    complete = [d for d in snapshot_folders(exports_dir) if (d / MANIFEST).is_file()]
    return complete[-1] if complete else None


def read_manifest(snapshot: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a snapshot folder."""
    data: dict[str, Any] = json.loads((snapshot / MANIFEST).read_text(encoding="utf-8"))
    return data


def request_snapshot(exports_dir: Path, wait_s: float = 60) -> Path:
    """Ask the running ingest (the one writer of the event store) for a snapshot and wait for
    it; the ingest answers on its next poll.

    Raises:
        SnapshotError: no new snapshot appeared within ``wait_s`` (the ingest is stuck or gone).
    """
    import time

    from services.errors import SnapshotError

    before = latest_snapshot(exports_dir)
    exports_dir.mkdir(parents=True, exist_ok=True)
    (exports_dir / SNAPSHOT_REQUEST).touch()
    deadline = time.monotonic() + wait_s
    while (found := latest_snapshot(exports_dir)) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    if found is None or found == before:
        raise SnapshotError(
            f"the running ingest did not write a snapshot within {wait_s:.0f} s; is it "
            "stuck? See its log."
        )
    return found


def part_path(exports_dir: Path, table: Table, day: date | None, digest: str) -> Path:
    """Where the writer keeps a file of ``table`` (of one ``day`` when partitioned) whose
    content ``digest`` names."""
    folder = exports_dir / PARTS / table.value
    if day is not None:
        folder /= f"day={day.isoformat()}"
    return folder / f"part-{digest}.parquet"


def table_files(
    snapshot: Path, table: Table, manifest: Mapping[str, Any] | None = None
) -> list[Path]:
    """The Parquet files whose union is ``table`` in a snapshot (empty: the table is absent)."""
    found = manifest if manifest is not None else read_manifest(snapshot)
    entry = found.get("tables", {}).get(table.value)
    if entry is None:
        return []
    if "parts" in entry:  # format 2: paths relative to the exports folder, or absolute
        return [snapshot.parent / str(part["path"]) for part in entry["parts"]]
    return [snapshot / str(entry.get("file", f"{table.value}.parquet"))]


@dataclass(frozen=True, slots=True)
class PairRow:
    """A click-derived training pair: a positive and a skipped product for a query."""

    norm_query: str
    positive_id: str
    negative_id: str
    grade: int
    weight: float


@dataclass(frozen=True, slots=True)
class JudgmentRow:
    """The best graded judgment of a product for a query across its served lists."""

    norm_query: str
    product_id: str
    grade: int
    last_ts: datetime | None


@dataclass(frozen=True, slots=True)
class OnlineArm:
    """Per-list online nDCG@10 (click gains) of one version on one arm."""

    version: str
    arm: str
    lists: int
    mean: float
    variance: float
    ctr_at_10: float


@dataclass(frozen=True, slots=True)
class InterleavingRecord:
    """Team-draft interleaving outcomes of a canary against its control version."""

    canary: str
    control: str
    lists: int
    wins: int
    losses: int
    ties: int


class Snapshot:
    """One complete snapshot, its tables readable as DuckDB views named after them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = folder.name
        self.manifest = read_manifest(folder)

    @classmethod
    def latest(cls, exports_dir: Path) -> Snapshot | None:
        """The newest complete snapshot under ``exports_dir``, if any."""
        folder = latest_snapshot(exports_dir)
        return cls(folder) if folder is not None else None

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory connection where every table of the snapshot is a view."""
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            shared = self.manifest.get("format", 1) >= 2  # a missing part is an error there
            for table in SNAPSHOT_TABLES:
                files = [str(f) for f in table_files(self.folder, table, self.manifest)]
                if files and (shared or Path(files[0]).is_file()):
                    # The day is in the folder names only: it must not become a column.
                    con.read_parquet(
                        files, hive_partitioning=False, union_by_name=True
                    ).create_view(table.value)
            yield con
        finally:
            con.close()

    def fetch(self, sql: str, params: Sequence[object] | None = None) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` over the snapshot's tables (by their :class:`Table` names)."""
        with self.connect() as con:
            return con.execute(sql, list(params or [])).fetchall()

    def training_pairs(self) -> list[PairRow]:
        """Every training pair, in a stable order."""
        rows = self.fetch(
            f"SELECT norm_query, positive_id, negative_id, grade, weight "
            f"FROM {Table.TRAINING_PAIRS} ORDER BY ALL"
        )
        return [PairRow(str(q), str(p), str(n), int(g), float(w)) for q, p, n, g, w in rows]

    def judgments(self) -> list[JudgmentRow]:
        """The best grade per (query, product) over every judged list, with its latest time."""
        rows = self.fetch(
            f"SELECT norm_query, product_id, max(grade), max(ts) FROM {Table.JUDGMENTS} "
            "GROUP BY ALL ORDER BY ALL"
        )
        return [JudgmentRow(str(q), str(p), int(g), ts) for q, p, g, ts in rows]

    def query_window(self) -> tuple[datetime | None, datetime | None]:
        """Time of the first and the last served list."""
        first, last = self.fetch(f"SELECT min(ts), max(ts) FROM {Table.QUERIES}")[0]
        return first, last

    def served_queries(self) -> set[str]:
        """Normalised text of every served query."""
        return {str(r[0]) for r in self.fetch(f"SELECT DISTINCT norm_query FROM {Table.QUERIES}")}

    def pair_queries(self) -> set[str]:
        """Normalised text of every query with a training pair."""
        return {
            str(r[0]) for r in self.fetch(f"SELECT DISTINCT norm_query FROM {Table.TRAINING_PAIRS}")
        }

    def online_arm(self, version: str, arm: str) -> OnlineArm:
        """Per-list online nDCG@10 of ``version`` served on ``arm`` (closed windows only)."""
        count, mean, variance, ctr = self.fetch(
            "SELECT count(*), coalesce(avg(ndcg_at_10), 0), coalesce(var_samp(ndcg_at_10), 0), "
            f"coalesce(avg(clicked::INT), 0) FROM {Table.ONLINE_METRICS} "
            "WHERE model_version = ? AND arm = ?",
            [version, arm],
        )[0]
        return OnlineArm(version, arm, int(count), float(mean), float(variance), float(ctr))

    def online_ndcg_by_version(self) -> dict[str, tuple[float, int]]:
        """Mean online nDCG@10 and list count per version over its single-model arms.

        An interleaved list mixes two versions' results: its nDCG is neither version's.
        """
        rows = self.fetch(
            "SELECT model_version, sum(mean_ndcg_at_10 * lists) / nullif(sum(lists), 0), "
            f"sum(lists) FROM {Table.ONLINE_METRICS_BY_ARM} WHERE arm <> 'interleaved' GROUP BY 1"
        )
        return {str(v): (float(m or 0.0), int(n)) for v, m, n in rows}

    def interleaving(self, canary: str, control: str) -> InterleavingRecord:
        """Closed interleaved lists of ``canary`` against ``control``, by outcome."""
        lists, wins, losses, ties = self.fetch(
            "SELECT coalesce(sum(lists), 0), coalesce(sum(wins), 0), coalesce(sum(losses), 0), "
            f"coalesce(sum(ties), 0) FROM {Table.INTERLEAVING_WINS} "
            "WHERE model_version = ? AND control_version = ?",
            [canary, control],
        )[0]
        return InterleavingRecord(canary, control, int(lists), int(wins), int(losses), int(ties))
