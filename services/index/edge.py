"""The embedded backend: one Qdrant Edge shard on disk per model version.

Concurrency: an ``EdgeShard`` may be shared by threads without a lock. Queries from many
threads (and a writer alongside them) return the same results as serial calls, but the
binding holds the GIL while it searches, so threads do not search in parallel.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import qdrant_edge as qe

from services.errors import SearchIndexError
from services.index import edge_query as eq
from services.index.base import Hit, IndexStamp, SearchFilters, VectorName
from services.index.common import SparseIndexBase, StoredPoint
from services.registry import atomic_write_text
from services.settings import FilterKind
from services.sparse import SparseVec

logger = logging.getLogger(__name__)
STAMP = "flywheel_index.json"
"""The index's :class:`~services.index.base.IndexStamp`, beside the shard's own files."""
T = TypeVar("T")
P = ParamSpec("P")


def _config() -> qe.EdgeConfig:
    return qe.EdgeConfig(
        sparse_vectors={
            "splade": qe.EdgeSparseVectorParams(),
            "bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf),
        }
    )


def _holds_shard(path: Path) -> bool:
    return (path / "edge_config.json").exists() or (path / "segments").exists()


def read_edge_stamp(path: Path) -> IndexStamp | None:
    """The stamp of the shard folder ``path`` without opening the shard (None if unstamped
    or unreadable)."""
    try:
        return IndexStamp.model_validate_json((path / STAMP).read_text("utf-8"))
    except (OSError, ValueError):
        return None


class EdgeIndex(SparseIndexBase):
    """:class:`~services.index.base.ProductIndex` over an embedded Qdrant Edge shard."""

    def __init__(self, shard: qe.EdgeShard, path: Path, version: str) -> None:
        """Wrap an open shard; use :meth:`create` or :meth:`open` instead."""
        super().__init__(version)
        self._shard = shard
        self._path = path
        self._closed = False

    @classmethod
    def create(
        cls,
        path: Path,
        version: str,
        filter_fields: Mapping[str, FilterKind],
        *,
        overwrite: bool = False,
    ) -> EdgeIndex:
        """A new, empty index at ``path`` with payload indexes for ``filter_fields``."""
        if _holds_shard(path):
            if not overwrite:
                raise SearchIndexError(
                    f"An index for version '{version}' already exists at {path}. Create it "
                    "with overwrite to rebuild it, or index under a new version."
                )
            logger.warning("Replacing the index at %s", path)
            shutil.rmtree(path)
        # A stamp left by a build that died before its shard was written must not survive.
        (path / STAMP).unlink(missing_ok=True)
        try:
            shard = qe.EdgeShard.create(str(path), _config())
            for field, kind in filter_fields.items():
                shard.update(qe.UpdateOperation.create_field_index(field, eq.field_schema(kind)))
        except Exception as exc:
            raise SearchIndexError(
                f"Cannot create the search index at {path}: {exc}. Check that the directory "
                "is writable and has free space."
            ) from exc
        logger.info("Created Edge index %s at %s", version, path)
        return cls(shard, path, version)

    @classmethod
    def open(cls, path: Path, version: str) -> EdgeIndex:
        """The existing index at ``path``."""
        if not _holds_shard(path):
            raise SearchIndexError(
                f"No search index for version '{version}' at {path}. Build it with "
                "`flywheel index --catalog FILE`."
            )
        try:
            shard = qe.EdgeShard.load(str(path))
        except Exception as exc:
            hint = (
                "Another process (or another open handle in this one) holds it: Qdrant Edge "
                "allows one; stop the other `flywheel serve`, or use a Qdrant server for "
                "several replicas."
                if "WouldBlock" in str(exc)
                else "Rebuild it with `flywheel index --catalog FILE`."
            )
            raise SearchIndexError(
                f"Cannot open the search index at {path}: {exc}. {hint}"
            ) from exc
        return cls(shard, path, version)

    @property
    def path(self) -> Path:
        """The shard directory."""
        return self._path

    def _call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._closed:
            raise SearchIndexError(f"The search index at {self._path} is closed; open it again.")
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise SearchIndexError(f"The search index at {self._path} failed: {exc}") from exc

    def _write(self, points: list[StoredPoint]) -> None:
        operation = qe.UpdateOperation.upsert_points([eq.point(p) for p in points])
        self._call(self._shard.update, operation)

    def _nearest(
        self,
        vector: SparseVec,
        using: VectorName,
        limit: int,
        offset: int,
        filters: SearchFilters | None,
    ) -> list[Hit]:
        request = eq.nearest(vector, using, limit, offset, filters)
        return eq.hits(self._call(self._shard.query, request))

    def _nearest_batch(
        self, vectors: list[SparseVec], using: VectorName, limit: int
    ) -> list[list[Hit]]:
        batch = qe.QueryBatchRequest([eq.nearest(v, using, limit) for v in vectors])
        return [eq.hits(points) for points in self._call(self._shard.query_batch, batch)]

    def _nearest_ids(
        self, vectors: dict[VectorName, SparseVec], depth: int, filters: SearchFilters | None
    ) -> dict[VectorName, list[tuple[str, float]]]:
        names = list(vectors)
        batch = qe.QueryBatchRequest(
            [eq.nearest(vectors[n], n, depth, 0, filters, with_payload=False) for n in names]
        )
        found = self._call(self._shard.query_batch, batch)
        return {name: eq.scored_ids(points) for name, points in zip(names, found, strict=True)}

    def _products(self, point_ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        ids: list[qe.PointId] = list(point_ids)
        return eq.products(self._call(self._shard.retrieve, ids, True, False))

    def _fused(
        self,
        vectors: dict[VectorName, SparseVec],
        limit: int,
        offset: int,
        filters: SearchFilters | None,
        depth: int,
        rrf_k: int,
    ) -> list[Hit]:
        request = eq.fused(vectors, limit, offset, filters, depth, rrf_k)
        return eq.hits(self._call(self._shard.query, request))

    def count(self) -> int:
        """Number of products stored."""
        return self._call(self._shard.count, qe.CountRequest(exact=True))

    def finalize(self) -> None:
        """After bulk indexing: run the segment optimizers and flush to disk."""
        optimized = self._call(self._shard.optimize)
        self._call(self._shard.flush)
        logger.info("Finalized Edge index %s (segments optimized: %s)", self.version, optimized)

    def write_stamp(self, stamp: IndexStamp) -> None:
        """Write the stamp atomically into the shard's folder."""
        atomic_write_text(self._path / STAMP, stamp.model_dump_json(indent=2))

    def read_stamp(self) -> IndexStamp | None:
        """The stamp in the shard's folder, if any."""
        return read_edge_stamp(self._path)

    def close(self) -> None:
        """Flush and release the shard; later calls raise :class:`SearchIndexError`."""
        if self._closed:
            return
        self._call(self._shard.flush)
        self._call(self._shard.close)
        self._closed = True

    def __enter__(self) -> EdgeIndex:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
