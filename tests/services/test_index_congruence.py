"""Congruence test: Qdrant Edge and qdrant-client (local mode) return the same results.

The same products, vectors and queries go through :class:`EdgeIndex` and through
:class:`QdrantServerIndex` on ``QdrantClient(location=":memory:")``; every ranking must agree
(SPLADE dot products, BM25 with the engine's IDF, filters, RRF hybrid, batches).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from services.index.base import Hit, SearchFilters, VectorName
from services.index.bm25 import Bm25Encoder
from services.index.edge import EdgeIndex
from services.index.fusion import Fusion
from services.index.server import QdrantServerIndex
from services.products import Product
from services.settings import FilterKind
from services.sparse import SparseVec

pytestmark = pytest.mark.integration

VOCAB = 30_522
N_DOCS = 2_000
N_QUERIES = 50
FIELDS: dict[str, FilterKind] = {"brand": "keyword", "category": "keyword", "price": "range"}
BRANDS = ("acme", "globex", "initech", "umbrella", "hooli")
CATEGORIES = ("shoes", "shirts", "hats", "bags")
FILTERS = (
    SearchFilters(keywords={"brand": ("acme", "hooli")}),
    SearchFilters(ranges={"price": (None, 40.0)}),
    SearchFilters(ranges={"price": (25.0, None)}),
    SearchFilters(keywords={"category": ("hats", "bags")}, ranges={"price": (10.0, 90.0)}),
)
WORDS = [
    "red",
    "blue",
    "green",
    "cotton",
    "wool",
    "linen",
    "slim",
    "classic",
    "running",
    "trail",
    "summer",
    "winter",
    "kids",
]


class Data:
    """Zipf-skewed term ids so that queries overlap many documents, as real text does."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(2024)
        weights = 1.0 / (np.arange(VOCAB) + 50.0)
        self.p = weights / weights.sum()
        self.products = [
            Product(
                f"p{i}",
                f"product {i}",
                {
                    "title": f"product {i}",
                    "brand": BRANDS[i % len(BRANDS)],
                    "category": CATEGORIES[i % len(CATEGORIES)],
                    "price": round(float(self.rng.uniform(1, 100)), 2),
                },
            )
            for i in range(N_DOCS)
        ]
        self.splade = [self.vec(40, 0.05, 3.0) for _ in range(N_DOCS)]
        # BM25-like document weights; a few documents have no BM25 terms at all.
        self.bm25 = [
            self.vec(12, 0.4, 2.2) if i % 97 else SparseVec.from_lists([], [])
            for i in range(N_DOCS)
        ]
        self.splade_queries = [self.vec(8, 0.1, 2.0) for _ in range(N_QUERIES)]
        self.bm25_queries = [self.vec(4, 1.0, 1.0) for _ in range(N_QUERIES)]

    def vec(self, nnz: int, low: float, high: float) -> SparseVec:
        idx = np.sort(self.rng.choice(VOCAB, size=nnz, replace=False, p=self.p)).astype(np.int32)
        return SparseVec(idx, self.rng.uniform(low, high, size=nnz).astype(np.float32))


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module")
def backends(
    data: Data, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[EdgeIndex, QdrantServerIndex]]:
    edge = EdgeIndex.create(tmp_path_factory.mktemp("edge") / "v1", "v1", FIELDS)
    server = QdrantServerIndex.create(QdrantClient(location=":memory:"), "products", "v1", FIELDS)
    for index in (edge, server):
        index.upsert(data.products, data.splade, data.bm25)
        index.finalize()
    yield edge, server
    edge.close()
    server.close()


def assert_same(edge: list[Hit], server: list[Hit], *, rel: float = 1e-4) -> None:
    """Same ids in the same order, same scores, same payloads."""
    assert [h.product_id for h in edge] == [h.product_id for h in server]
    assert [h.score for h in edge] == pytest.approx([h.score for h in server], rel=rel)
    assert [h.payload for h in edge] == [h.payload for h in server]


def assert_same_up_to_ties(edge: list[Hit], server: list[Hit], limit: int) -> None:
    """For rank-based scores: equal score lists, equal id sets within each tie group
    (the group cut by ``limit`` may legitimately hold different members)."""
    assert [h.score for h in edge] == pytest.approx([h.score for h in server], rel=1e-6)
    groups: list[tuple[set[str], set[str]]] = []
    for i, (a, b) in enumerate(zip(edge, server, strict=True)):
        if i == 0 or a.score != pytest.approx(edge[i - 1].score, rel=1e-6):
            groups.append((set(), set()))
        groups[-1][0].add(a.product_id)
        groups[-1][1].add(b.product_id)
    complete = groups if len(edge) < limit else groups[:-1]
    assert all(a == b for a, b in complete)


def test_both_backends_hold_every_product(backends: tuple[EdgeIndex, QdrantServerIndex]) -> None:
    edge, server = backends
    assert edge.count() == server.count() == N_DOCS


def test_congruence_splade(data: Data, backends: tuple[EdgeIndex, QdrantServerIndex]) -> None:
    edge, server = backends
    for query in data.splade_queries:
        hits = edge.search(query, limit=10)
        assert len(hits) == 10
        assert_same(hits, server.search(query, limit=10))
        assert_same(edge.search(query, limit=5, offset=7), server.search(query, limit=5, offset=7))


def test_congruence_bm25_with_engine_idf(
    data: Data, backends: tuple[EdgeIndex, QdrantServerIndex]
) -> None:
    edge, server = backends
    for query in data.bm25_queries:
        hits = edge.search(query, using="bm25", limit=10)
        assert hits
        assert_same(hits, server.search(query, using="bm25", limit=10))


@pytest.mark.parametrize("filters", FILTERS)
def test_congruence_filters(
    data: Data, backends: tuple[EdgeIndex, QdrantServerIndex], filters: SearchFilters
) -> None:
    edge, server = backends
    for query in data.splade_queries[:20]:  # local mode is slow with filters
        assert_same(
            edge.search(query, limit=10, filters=filters),
            server.search(query, limit=10, filters=filters),
        )
    for query in data.bm25_queries[:10]:
        assert_same(
            edge.search(query, using="bm25", filters=filters),
            server.search(query, using="bm25", filters=filters),
        )


@pytest.mark.parametrize(
    "fusion", [Fusion("rrf", rrf_k=2), Fusion("rrf", rrf_k=60), Fusion("convex", 0.4)]
)
@pytest.mark.parametrize("filters", [None, FILTERS[3]])
def test_congruence_hybrid(
    data: Data,
    backends: tuple[EdgeIndex, QdrantServerIndex],
    fusion: Fusion,
    filters: SearchFilters | None,
) -> None:
    edge, server = backends
    n = N_QUERIES if filters is None else 20  # local mode is slow with filters
    pairs = zip(data.splade_queries[:n], data.bm25_queries[:n], strict=True)
    for splade, bm25 in pairs:
        hits = [
            index.hybrid_search(
                splade, bm25, limit=10, filters=filters, prefetch_limit=50, fusion=fusion
            )
            for index in (edge, server)
        ]
        assert len(hits[0]) == 10
        assert_same_up_to_ties(hits[0], hits[1], 10)


def test_congruence_search_batch(data: Data, backends: tuple[EdgeIndex, QdrantServerIndex]) -> None:
    edge, server = backends
    runs: list[tuple[VectorName, list[SparseVec]]] = [
        ("splade", data.splade_queries),
        ("bm25", data.bm25_queries),
    ]
    for using, queries in runs:
        ours = edge.search_batch(queries, using=using, limit=10)
        theirs = server.search_batch(queries, using=using, limit=10)
        for a, b in zip(ours, theirs, strict=True):
            assert_same(a, b)


def test_congruence_real_bm25_text(tmp_path: Path) -> None:
    """Real English BM25 vectors (many tied scores) from :class:`Bm25Encoder`."""
    rng = np.random.default_rng(5)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 7)))) for _ in range(400)]
    products = [Product(f"t{i}", t, {"title": t}) for i, t in enumerate(texts)]
    encoder = Bm25Encoder.for_corpus(texts)
    bm25 = encoder.encode_documents(texts)
    splade = [SparseVec.from_lists([i], [1.0]) for i in range(len(texts))]
    edge = EdgeIndex.create(tmp_path / "v1", "v1", {})
    server = QdrantServerIndex.create(QdrantClient(location=":memory:"), "t", "v1", {})
    for index in (edge, server):
        index.upsert(products, splade, bm25)
    for query in ("red running shoes", "kids winter wool", "classic linen", "green"):
        vec = encoder.encode_query(query)
        assert_same_up_to_ties(
            edge.search(vec, using="bm25", limit=20), server.search(vec, using="bm25", limit=20), 20
        )
    edge.close()
