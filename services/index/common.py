"""Behaviour both backends share, so they agree by construction (see the congruence test).

:class:`SparseIndexBase` validates arguments, batches writes, builds the stored points and
skips empty query vectors; a backend supplies only the engine calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from services.index.base import Hit, IndexStamp, SearchFilters, VectorName
from services.index.fusion import DEFAULT_FUSION, Fusion, convex
from services.index.ids import point_id, to_payload
from services.products import Product
from services.sparse import SparseVec

TIE_MARGIN = 4
"""Extra fused results fetched so a tie group straddling the page's end is seen whole."""
UPSERT_BATCH = 512
"""Points per write request."""


StoredPoint = tuple[str, dict[str, Any], dict[str, SparseVec]]
"""Point id, payload and the non-empty named vectors of one product."""


def check_page(limit: int, offset: int) -> None:
    """Raise ``ValueError`` for a non-positive ``limit`` or a negative ``offset``."""
    if limit < 1 or offset < 0:
        raise ValueError(f"limit must be >= 1 and offset >= 0; got limit={limit}, offset={offset}")


class SparseIndexBase(ABC):
    """The public search API over a few engine-specific primitives."""

    def __init__(self, version: str) -> None:
        self._version = version

    @property
    def version(self) -> str:
        """The model version whose vectors this index holds."""
        return self._version

    def upsert(
        self, products: Sequence[Product], splade: Sequence[SparseVec], bm25: Sequence[SparseVec]
    ) -> None:
        """Insert or replace products with their vectors (same order, same length).

        Empty vectors are not stored, so a product without BM25 terms stays out of the
        BM25 IDF statistics on every backend.
        """
        if not len(products) == len(splade) == len(bm25):
            raise ValueError(
                f"upsert needs one SPLADE and one BM25 vector per product; got {len(products)} "
                f"products, {len(splade)} SPLADE and {len(bm25)} BM25 vectors"
            )
        for start in range(0, len(products), UPSERT_BATCH):
            rows = range(start, min(len(products), start + UPSERT_BATCH))
            self._write(
                [
                    (
                        point_id(products[i].id),
                        to_payload(products[i]),
                        {n: v for n, v in (("splade", splade[i]), ("bm25", bm25[i])) if len(v)},
                    )
                    for i in rows
                ]
            )

    def search(
        self,
        vector: SparseVec,
        *,
        using: VectorName = "splade",
        limit: int = 10,
        offset: int = 0,
        filters: SearchFilters | None = None,
    ) -> list[Hit]:
        """Top ``limit`` products by dot product after skipping ``offset``, best first."""
        check_page(limit, offset)
        if not len(vector):
            return []
        return self._nearest(vector, using, limit, offset, filters or None)

    def search_batch(
        self, vectors: Sequence[SparseVec], *, using: VectorName = "splade", limit: int = 10
    ) -> list[list[Hit]]:
        """Many unfiltered searches in one engine call."""
        check_page(limit, 0)
        results: list[list[Hit]] = [[] for _ in vectors]
        live = [i for i, vector in enumerate(vectors) if len(vector)]
        if live:
            found = self._nearest_batch([vectors[i] for i in live], using, limit)
            for i, hits in zip(live, found, strict=True):
                results[i] = hits
        return results

    def hybrid_search(
        self,
        splade_vec: SparseVec,
        bm25_vec: SparseVec,
        *,
        limit: int = 10,
        offset: int = 0,
        filters: SearchFilters | None = None,
        prefetch_limit: int | None = None,
        fusion: Fusion = DEFAULT_FUSION,
    ) -> list[Hit]:
        """SPLADE and BM25 candidates (each ``max(prefetch_limit, limit + offset)`` deep,
        ``prefetch_limit`` by default ``fusion.depth``; filtered) fused by ``fusion``
        (:mod:`services.index.fusion`); best first."""
        check_page(limit, offset)
        named: dict[VectorName, SparseVec] = {"splade": splade_vec, "bm25": bm25_vec}
        live = {name: vec for name, vec in named.items() if len(vec)}
        if not live:
            return []
        window = limit + offset
        depth = max(prefetch_limit or fusion.depth, window)
        if fusion.method == "rrf":
            # Equal RRF scores (the same ranks in different lists) come back from the engine
            # in no fixed order. Fetch the page with the whole window before it plus a margin,
            # order ties by product id and slice: a query always gets the same list, and pages
            # continue each other exactly.
            fused = self._fused(live, window + TIE_MARGIN, 0, filters or None, depth, fusion.rrf_k)
        else:
            fused = self._convex(live, window, filters or None, depth, fusion)
        fused.sort(key=lambda h: (-h.score, h.product_id))
        return fused[offset:window]

    def _convex(
        self,
        vectors: dict[VectorName, SparseVec],
        window: int,
        filters: SearchFilters | None,
        depth: int,
        fusion: Fusion,
    ) -> list[Hit]:
        """The best ``window`` candidates of the convex fusion, with every candidate tied with
        the last of them, and their payloads."""
        # Each list whole (depth deep: a full list's last candidate sets the share of those
        # absent from it), but as point ids and scores: payloads are fetched for the page
        # only. Two lists of 100 with payloads took 1.2 ms more at the median on Edge (README,
        # "Default search mode").
        scores = convex(self._nearest_ids(vectors, depth, filters), fusion, depth)
        ranked = sorted(scores.items(), key=lambda item: -item[1])
        if not ranked:
            return []
        end = min(window, len(ranked))
        while end < len(ranked) and ranked[end][1] == ranked[end - 1][1]:
            end += 1  # ties are ordered by product id, so the whole tie group needs its ids
        found = self._products([pid for pid, _ in ranked[:end]])
        # A point deleted between the two calls is left out rather than shown without data.
        return [
            Hit(found[pid][0], score, found[pid][1]) for pid, score in ranked[:end] if pid in found
        ]

    @abstractmethod
    def _write(self, points: list[StoredPoint]) -> None: ...

    @abstractmethod
    def _nearest(
        self,
        vector: SparseVec,
        using: VectorName,
        limit: int,
        offset: int,
        filters: SearchFilters | None,
    ) -> list[Hit]: ...

    @abstractmethod
    def _nearest_batch(
        self, vectors: list[SparseVec], using: VectorName, limit: int
    ) -> list[list[Hit]]: ...

    @abstractmethod
    def _nearest_ids(
        self, vectors: dict[VectorName, SparseVec], depth: int, filters: SearchFilters | None
    ) -> dict[VectorName, list[tuple[str, float]]]:
        """Each vector's ``depth`` nearest points as (point id, score), best first, in one
        engine call and without payloads."""

    @abstractmethod
    def _products(self, point_ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """Point id -> (product id, payload) of those of ``point_ids`` (never empty) that
        exist."""

    @abstractmethod
    def _fused(
        self,
        vectors: dict[VectorName, SparseVec],
        limit: int,
        offset: int,
        filters: SearchFilters | None,
        depth: int,
        rrf_k: int,
    ) -> list[Hit]: ...

    @abstractmethod
    def count(self) -> int:
        """Number of products stored."""

    @abstractmethod
    def finalize(self) -> None:
        """Call once after bulk indexing."""

    @abstractmethod
    def write_stamp(self, stamp: IndexStamp) -> None:
        """Record who built this index and, once complete, for which model."""

    @abstractmethod
    def read_stamp(self) -> IndexStamp | None:
        """The recorded stamp, if any."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release files or connections."""
