"""The server backend: one Qdrant collection per model version, behind an alias.

Works against a real server (``QdrantClient(url=...)``) and qdrant-client's local mode
(``location=":memory:"`` or ``path=...``), which brute-forces every query and ignores
payload indexes, shard and replication settings.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from qdrant_client import QdrantClient, models

from services.errors import SearchIndexError
from services.index import server_query as sq
from services.index.base import Hit, IndexStamp, SearchFilters, VectorName
from services.index.common import SparseIndexBase, StoredPoint
from services.settings import FilterKind
from services.sparse import SparseVec

logger = logging.getLogger(__name__)
STAMP_KEY = "flywheel"
"""The collection metadata key holding the index's :class:`~services.index.base.IndexStamp`."""
T = TypeVar("T")
P = ParamSpec("P")


def collection_name(prefix: str, version: str) -> str:
    """The collection holding ``version``: ``'<prefix>__<version>'``."""
    return f"{prefix}__{version}"


def stamp_of(metadata: Mapping[str, object] | None) -> IndexStamp | None:
    """The stamp in a collection's metadata (None if absent or not Flywheel's)."""
    raw = (metadata or {}).get(STAMP_KEY)
    if not isinstance(raw, dict):
        return None
    try:
        return IndexStamp.model_validate(raw)
    except ValueError:
        return None


class QdrantServerIndex(SparseIndexBase):
    """:class:`~services.index.base.ProductIndex` over a Qdrant collection."""

    def __init__(self, client: QdrantClient, prefix: str, version: str) -> None:
        """Wrap a collection; use :meth:`create` or :meth:`open` instead."""
        super().__init__(version)
        self._client = client
        self._prefix = prefix
        self._collection = collection_name(prefix, version)

    @classmethod
    def create(
        cls,
        client: QdrantClient,
        prefix: str,
        version: str,
        filter_fields: Mapping[str, FilterKind],
        *,
        shard_number: int = 1,
        replication_factor: int = 1,
        overwrite: bool = False,
    ) -> QdrantServerIndex:
        """A new, empty collection with both sparse vectors and the payload indexes."""
        index = cls(client, prefix, version)
        name = index.collection
        if index._call(client.collection_exists, name):
            if not overwrite:
                raise SearchIndexError(
                    f"Collection '{name}' already exists. Create it with overwrite to rebuild "
                    "it, or index under a new version."
                )
            logger.warning("Replacing collection %s", name)
            index.drop()
        index._call(
            client.create_collection,
            name,
            vectors_config={},
            sparse_vectors_config=sq.SPARSE_VECTORS,
            shard_number=shard_number,
            replication_factor=replication_factor,
        )
        with warnings.catch_warnings():  # local mode: "payload indexes have no effect"
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for field, kind in filter_fields.items():
                index._call(client.create_payload_index, name, field, sq.field_schema(kind))
        logger.info("Created collection %s", name)
        return index

    @classmethod
    def open(cls, client: QdrantClient, prefix: str, version: str) -> QdrantServerIndex:
        """The existing collection of ``version``."""
        index = cls(client, prefix, version)
        if not index._call(client.collection_exists, index.collection):
            raise SearchIndexError(
                f"No search index for version '{version}' (collection '{index.collection}'). "
                "Build it with `flywheel index --catalog FILE`."
            )
        return index

    @property
    def collection(self) -> str:
        """The collection name."""
        return self._collection

    def _call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise SearchIndexError(
                f"Qdrant failed on collection '{self._collection}': {exc}. Check that the "
                "server is reachable (FLYWHEEL_QDRANT__URL) and the API key is right."
            ) from exc

    def _write(self, points: list[StoredPoint]) -> None:
        structs = [sq.point(p) for p in points]
        self._call(self._client.upsert, self._collection, structs, wait=True)

    def _nearest(
        self,
        vector: SparseVec,
        using: VectorName,
        limit: int,
        offset: int,
        filters: SearchFilters | None,
    ) -> list[Hit]:
        response = self._call(
            self._client.query_points,
            self._collection,
            query=sq.sparse(vector),
            using=using,
            limit=limit,
            offset=offset,
            query_filter=sq.server_filter(filters),
            with_payload=True,
        )
        return sq.hits(response.points)

    def _nearest_batch(
        self, vectors: list[SparseVec], using: VectorName, limit: int
    ) -> list[list[Hit]]:
        requests = [sq.nearest(v, using, limit=limit) for v in vectors]
        responses = self._call(self._client.query_batch_points, self._collection, requests)
        return [sq.hits(r.points) for r in responses]

    def _nearest_ids(
        self, vectors: dict[VectorName, SparseVec], depth: int, filters: SearchFilters | None
    ) -> dict[VectorName, list[tuple[str, float]]]:
        names = list(vectors)
        requests = [
            sq.nearest(vectors[n], n, limit=depth, filters=filters, with_payload=False)
            for n in names
        ]
        found = self._call(self._client.query_batch_points, self._collection, requests)
        return {
            name: sq.scored_ids(response.points)
            for name, response in zip(names, found, strict=True)
        }

    def _products(self, point_ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        records = self._call(self._client.retrieve, self._collection, point_ids, with_payload=True)
        return sq.products(records)

    def _fused(
        self,
        vectors: dict[VectorName, SparseVec],
        limit: int,
        offset: int,
        filters: SearchFilters | None,
        depth: int,
        rrf_k: int,
    ) -> list[Hit]:
        response = self._call(
            self._client.query_points,
            self._collection,
            prefetch=sq.prefetches(vectors, depth),
            query=sq.fusion(rrf_k),
            limit=limit,
            offset=offset,
            query_filter=sq.server_filter(filters),
            with_payload=True,
        )
        return sq.hits(response.points)

    def count(self) -> int:
        """Number of products stored."""
        return self._call(self._client.count, self._collection, exact=True).count

    def finalize(self) -> None:
        """After bulk indexing; the server optimizes in the background, so nothing to do."""

    def write_stamp(self, stamp: IndexStamp) -> None:
        """Store the stamp in the collection's metadata."""
        self._call(
            self._client.update_collection,
            self._collection,
            metadata={STAMP_KEY: stamp.model_dump(mode="json")},
        )

    def read_stamp(self) -> IndexStamp | None:
        """The stamp in the collection's metadata, if any."""
        info = self._call(self._client.get_collection, self._collection)
        return stamp_of(info.config.metadata)

    def set_alias(self, alias: str, version: str | None = None) -> None:
        """Atomically point ``alias`` at ``version``'s collection (default: this one)."""
        target = collection_name(self._prefix, version or self.version)
        existing = self._call(self._client.get_aliases).aliases
        ops: list[models.AliasOperations] = [
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
            for a in existing
            if a.alias_name == alias
        ]
        ops.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=target, alias_name=alias)
            )
        )
        self._call(self._client.update_collection_aliases, ops)
        logger.info("Alias %s -> %s", alias, target)

    def drop(self) -> None:
        """Delete this version's collection."""
        self._call(self._client.delete_collection, self._collection)

    def close(self) -> None:
        """Close the client (it belongs to this index; local mode flushes to disk)."""
        self._call(self._client.close)
