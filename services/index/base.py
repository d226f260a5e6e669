"""The interface every index backend implements, and the types it speaks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field

from services.products import Product
from services.sparse import SparseVec

if TYPE_CHECKING:  # fusion.py needs Hit from here
    from services.index.fusion import Fusion

QDRANT_RRF_K = 2
"""Qdrant's own default RRF constant: score = sum over lists of 1 / (k + rank)."""
DEFAULT_RRF_K = 60
"""Flywheel's default, Cormack et al.'s constant: on held-out Home Depot queries it fuses a weak
SPLADE model with BM25 better than Qdrant's 2 (README, "Default search mode")."""

VectorName = Literal["splade", "bm25"]
"""Named sparse vectors of every point: the model's SPLADE vector and a BM25 vector (IDF in
the engine) for the baseline and for hybrid retrieval."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result."""

    product_id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Conjunction of payload conditions: each keyword field matches any of its values; each
    range field is an inclusive [low, high] with either end open (None)."""

    keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.keywords or self.ranges)


class IndexStamp(BaseModel):
    """What an index records about itself (Qdrant Edge: a file in its folder; a Qdrant server:
    the collection's metadata): which registry built it for which version, and, once every
    product is stored, the model's hash and the point count. Checked against the registry's
    :class:`~services.registry.IndexRecord` before the index may serve."""

    version: str
    registry_id: str
    model_hash: str | None = Field(default=None, description="Set once the index is complete.")
    points: int | None = Field(default=None, description="Set once the index is complete.")

    @property
    def complete(self) -> bool:
        """Every product was stored and flushed."""
        return self.model_hash is not None and self.points is not None


class ProductIndex(Protocol):
    """A per-model-version index of products with two named sparse vectors."""

    @property
    def version(self) -> str: ...

    def upsert(
        self,
        products: Sequence[Product],
        splade: Sequence[SparseVec],
        bm25: Sequence[SparseVec],
    ) -> None:
        """Insert or replace products with their vectors (same order, same length)."""

    def search(
        self,
        vector: SparseVec,
        *,
        using: VectorName = "splade",
        limit: int = 10,
        offset: int = 0,
        filters: SearchFilters | None = None,
    ) -> list[Hit]:
        """Top ``limit`` products after skipping ``offset``, best first."""

    def search_batch(
        self, vectors: Sequence[SparseVec], *, using: VectorName = "splade", limit: int = 10
    ) -> list[list[Hit]]:
        """Many unfiltered searches at once (offline evaluation)."""

    def hybrid_search(
        self,
        splade_vec: SparseVec,
        bm25_vec: SparseVec,
        *,
        limit: int = 10,
        offset: int = 0,
        filters: SearchFilters | None = None,
        prefetch_limit: int | None = None,
        fusion: Fusion = ...,
    ) -> list[Hit]:
        """SPLADE and BM25 candidates (``prefetch_limit`` deep, by default ``fusion.depth``)
        fused by ``fusion`` (:mod:`services.index.fusion`: a convex combination of normalised
        scores, or reciprocal rank in the engine)."""

    def finalize(self) -> None:
        """Call once after bulk indexing (optimizes and flushes where that helps)."""

    def count(self) -> int:
        """Number of products stored."""

    def write_stamp(self, stamp: IndexStamp) -> None:
        """Record who built this index and, once complete, for which model."""

    def read_stamp(self) -> IndexStamp | None:
        """The recorded stamp; None for an index built before stamps (or not by Flywheel)."""

    def close(self) -> None:
        """Flush and release files or connections."""
