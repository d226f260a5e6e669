"""EdgeIndex against brute force: ranking, paging, filters, BM25, persistence, errors."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.errors import SearchIndexError
from services.index.base import Hit, SearchFilters
from services.index.bm25 import Bm25Encoder
from services.index.edge import EdgeIndex
from services.index.fusion import DEFAULT_DEPTH, Fusion, normalise
from services.index.ids import point_id
from services.products import Product
from services.settings import FilterKind
from services.sparse import SparseVec

VOCAB = 2_000
N_DOCS = 300
FIELDS: dict[str, FilterKind] = {"brand": "keyword", "category": "keyword", "price": "range"}
BRANDS = ("acme", "globex", "initech", "umbrella")
CATEGORIES = ("shoes", "shirts", "hats")
WORDS = ("red", "blue", "cotton", "wool", "classic", "slim", "running", "summer", "winter")


def random_vec(rng: np.random.Generator, nnz: int) -> SparseVec:
    idx = np.sort(rng.choice(VOCAB, size=nnz, replace=False)).astype(np.int32)
    return SparseVec(idx, rng.uniform(0.05, 2.0, size=nnz).astype(np.float32))


def make_products(rng: np.random.Generator) -> list[Product]:
    products = []
    for i in range(N_DOCS):
        title = " ".join(rng.choice(WORDS, size=3)) + f" {CATEGORIES[i % 3]}"
        price = 50.0 if i % 25 == 0 else round(float(rng.uniform(1, 200)), 2)
        payload = {"title": title, "brand": BRANDS[i % 4], "category": CATEGORIES[i % 3]}
        products.append(Product(f"sku-{i}", title, {**payload, "price": price}))
    products.append(
        Product(
            "sku-boots",
            "Waterproof hiking boots",
            {
                "title": "Waterproof hiking boots",
                "brand": "acme",
                "category": "shoes",
                "price": 120.0,
            },
        )
    )
    return products


class Corpus:
    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        self.products = make_products(rng)
        self.splade = [random_vec(rng, 30) for _ in self.products]
        self.encoder = Bm25Encoder.for_corpus(p.text for p in self.products)
        self.bm25 = self.encoder.encode_documents([p.text for p in self.products])
        self.queries = [random_vec(rng, 8) for _ in range(25)]

    def brute_force(self, query: SparseVec, keep: Any = None) -> list[tuple[str, float]]:
        scored = [
            (p.id, query.dot(d))
            for p, d in zip(self.products, self.splade, strict=True)
            if keep is None or keep(p.payload)
        ]
        return sorted([s for s in scored if s[1] > 0], key=lambda s: -s[1])


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus()


@pytest.fixture()
def index(tmp_path: Path, corpus: Corpus) -> Iterator[EdgeIndex]:
    idx = EdgeIndex.create(tmp_path / "v1", "v1", FIELDS)
    idx.upsert(corpus.products, corpus.splade, corpus.bm25)
    idx.finalize()
    yield idx
    idx.close()


def assert_matches(hits: list[Hit], expected: list[tuple[str, float]]) -> None:
    assert [h.product_id for h in hits] == [pid for pid, _ in expected]
    for hit, (_, score) in zip(hits, expected, strict=True):
        assert hit.score == pytest.approx(score, rel=1e-5)


def test_search_matches_brute_force(index: EdgeIndex, corpus: Corpus) -> None:
    assert index.count() == len(corpus.products)
    for query in corpus.queries:
        assert_matches(index.search(query, limit=10), corpus.brute_force(query)[:10])


def test_hits_carry_the_product_payload(index: EdgeIndex, corpus: Corpus) -> None:
    by_id = {p.id: p for p in corpus.products}
    for hit in index.search(corpus.queries[0], limit=5):
        assert hit.payload == by_id[hit.product_id].payload


def test_offset_pages_concatenate_to_the_full_ranking(index: EdgeIndex, corpus: Corpus) -> None:
    query = corpus.queries[1]
    full = index.search(query, limit=20)
    pages = [h for off in range(0, 20, 5) for h in index.search(query, limit=5, offset=off)]
    assert [h.product_id for h in pages] == [h.product_id for h in full]


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        (
            SearchFilters(keywords={"brand": ("acme", "initech")}),
            lambda p: p["brand"] in {"acme", "initech"},
        ),
        (SearchFilters(ranges={"price": (None, 50.0)}), lambda p: p["price"] <= 50.0),
        (SearchFilters(ranges={"price": (50.0, None)}), lambda p: p["price"] >= 50.0),
        (SearchFilters(ranges={"price": (20.0, 80.0)}), lambda p: 20.0 <= p["price"] <= 80.0),
        (
            SearchFilters(
                keywords={"category": ("shoes",), "brand": ("acme", "globex")},
                ranges={"price": (10.0, 150.0)},
            ),
            lambda p: (
                p["category"] == "shoes"
                and p["brand"] in {"acme", "globex"}
                and 10.0 <= p["price"] <= 150.0
            ),
        ),
    ],
)
def test_filters_return_only_matching_products(
    index: EdgeIndex, corpus: Corpus, filters: SearchFilters, keep: Any
) -> None:
    for query in corpus.queries:
        hits = index.search(query, limit=10, filters=filters)
        assert all(keep(h.payload) for h in hits)
        assert_matches(hits, corpus.brute_force(query, keep)[:10])


def test_empty_filters_mean_no_filter(index: EdgeIndex, corpus: Corpus) -> None:
    query = corpus.queries[2]
    assert index.search(query, filters=SearchFilters()) == index.search(query)


def test_bm25_finds_the_document_with_the_query_terms(index: EdgeIndex, corpus: Corpus) -> None:
    hits = index.search(corpus.encoder.encode_query("hiking boot"), using="bm25", limit=3)
    assert hits[0].product_id == "sku-boots"
    assert index.search(corpus.encoder.encode_query("the and of"), using="bm25") == []


def test_search_batch_equals_single_searches(index: EdgeIndex, corpus: Corpus) -> None:
    batch = index.search_batch([*corpus.queries[:5], SparseVec.from_lists([], [])], limit=7)
    assert batch == [index.search(q, limit=7) for q in corpus.queries[:5]] + [[]]


def test_hybrid_search_fuses_both_rankings(index: EdgeIndex, corpus: Corpus) -> None:
    bm25 = corpus.encoder.encode_query("hiking boots")
    rrf = index.hybrid_search(corpus.splade[-1], bm25, limit=5, fusion=Fusion("rrf"))
    assert rrf[0].product_id == "sku-boots"  # first in both lists (rank 0): 2 / (k + 0)
    assert rrf[0].score == pytest.approx(2 / 60)  # the default constant, Cormack et al.'s
    qdrant_k = index.hybrid_search(corpus.splade[-1], bm25, limit=5, fusion=Fusion("rrf", rrf_k=2))
    assert qdrant_k[0].product_id == "sku-boots" and qdrant_k[0].score == pytest.approx(1.0)
    # Convex: the best of both lists scores α·1 + (1 − α)·1; every score is the convex
    # combination of the two lists' scores divided by their best.
    hits = index.hybrid_search(corpus.splade[-1], bm25, limit=5)  # the default: convex 0.4
    assert hits[0].product_id == "sku-boots" and hits[0].score == pytest.approx(1.0)
    splade = index.search(corpus.splade[-1], limit=DEFAULT_DEPTH)  # each list this deep
    lexical = index.search(bm25, using="bm25", limit=DEFAULT_DEPTH)
    # SPLADE's list is full (it matches most products), so a product absent from it may have
    # scored just below its last: it gets the last one's share. BM25's is short, so it holds
    # every match: a product absent from it gets 0 there.
    assert len(splade) == DEFAULT_DEPTH and len(lexical) < DEFAULT_DEPTH
    norm = {
        name: normalise([(h.product_id, h.score) for h in found], "max")
        for name, found in (("splade", splade), ("bm25", lexical))
    }
    floor = splade[-1].score / splade[0].score
    assert floor > 0
    for hit in hits:
        expected = 0.4 * norm["splade"].get(hit.product_id, floor)
        expected += 0.6 * norm["bm25"].get(hit.product_id, 0.0)
        assert hit.score == pytest.approx(expected)
    # α = 0 is BM25's ranking (ties by product id, as every fused list)
    n = min(5, len(lexical))
    only_bm25 = index.hybrid_search(corpus.splade[-1], bm25, limit=n, fusion=Fusion("convex", 0.0))
    by_score = sorted(lexical, key=lambda h: (-h.score, h.product_id))
    assert [h.product_id for h in only_bm25] == [h.product_id for h in by_score[:n]]
    brand = SearchFilters(keywords={"brand": ("globex",)})
    assert all(
        h.payload["brand"] == "globex"
        for h in index.hybrid_search(corpus.queries[0], bm25, filters=brand)
    )


def test_hybrid_depth_is_how_many_candidates_each_list_gives(
    index: EdgeIndex, corpus: Corpus
) -> None:
    bm25 = corpus.encoder.encode_query("classic wool hats")
    splade = index.search(corpus.splade[0], limit=5)
    lexical = index.search(bm25, using="bm25", limit=5)
    shallow = index.hybrid_search(corpus.splade[0], bm25, limit=20, fusion=Fusion(depth=5))
    # Only the top 5 of each list are candidates, normalised over those 5 (the page's end,
    # 20, is deeper than the depth, so each list gives 20 here).
    assert len(shallow) == 20 and len({h.product_id for h in splade + lexical}) < 20
    deep = index.hybrid_search(corpus.splade[0], bm25, limit=20, fusion=Fusion(depth=200))
    assert [h.score for h in shallow] != [h.score for h in deep]
    page = index.hybrid_search(corpus.splade[0], bm25, limit=3, fusion=Fusion(depth=5))
    assert {h.product_id for h in page} <= {h.product_id for h in splade + lexical}
    # Both lists are full at depth 5: a candidate absent from one may have scored just below
    # its 5th, so it gets the 5th's share (score / best) from that list.
    assert len(splade) == len(lexical) == 5
    lists = {"splade": splade, "bm25": lexical}
    share = {n: {h.product_id: h.score / hs[0].score for h in hs} for n, hs in lists.items()}
    floor = {n: hs[-1].score / hs[0].score for n, hs in lists.items()}
    fused = index.hybrid_search(corpus.splade[0], bm25, limit=5, fusion=Fusion(depth=5))
    assert any(h.product_id not in share["splade"] for h in fused) and min(floor.values()) > 0
    for hit in fused:
        expected = 0.4 * share["splade"].get(hit.product_id, floor["splade"])
        expected += 0.6 * share["bm25"].get(hit.product_id, floor["bm25"])
        assert hit.score == pytest.approx(expected)


def test_hybrid_pages_continue_and_ties_are_ordered_by_id(index: EdgeIndex, corpus: Corpus) -> None:
    bm25 = corpus.encoder.encode_query("hiking boots")
    full = index.hybrid_search(corpus.splade[-1], bm25, limit=10)
    pages = [index.hybrid_search(corpus.splade[-1], bm25, limit=5, offset=o) for o in (0, 5)]
    assert [h.product_id for h in pages[0] + pages[1]] == [h.product_id for h in full]
    assert full == sorted(full, key=lambda h: (-h.score, h.product_id))


def test_convex_ties_across_the_page_end_are_ordered_by_product_id(tmp_path: Path) -> None:
    # Eight copies of one product tie in both lists. The engine returns point ids, whose order
    # (UUIDs, here also the order of storing) is not the product ids'; the page must still be
    # the tie group in product-id order, with every copy's own payload, and the pages must
    # continue each other.
    vec, words = SparseVec.from_lists([3, 9], [1.0, 2.0]), "blue cotton shirt"
    copies = [Product(f"copy-{i}", words, {"title": f"{words} {i}"}) for i in range(8)]
    copies.sort(key=lambda p: point_id(p.id))  # stored in point-id order, not product-id
    other = Product("other", "red wool hat", {"title": "red wool hat"})
    bm25 = Bm25Encoder.for_corpus(p.text for p in [*copies, other])
    with EdgeIndex.create(tmp_path / "v1", "v1", FIELDS) as idx:
        idx.upsert(
            [*copies, other],
            [vec] * 8 + [SparseVec.from_lists([3], [0.5])],
            bm25.encode_documents([p.text for p in [*copies, other]]),
        )
        query = (vec, bm25.encode_query("blue cotton shirt"))
        pages = [idx.hybrid_search(*query, limit=3, offset=o) for o in (0, 3, 6)]
    hits = [h for page in pages for h in page]
    ids = [h.product_id for h in hits]
    assert ids == [f"copy-{i}" for i in range(8)] + ["other"]
    assert sorted(point_id(p) for p in ids[:8]) != [point_id(p) for p in ids[:8]]
    assert all(h.payload["title"] == f"{words} {h.product_id[-1]}" for h in hits[:8])


def test_concurrent_searches_agree_with_serial_ones(index: EdgeIndex, corpus: Corpus) -> None:
    serial = [index.search(q) for q in corpus.queries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(4):
            assert list(pool.map(index.search, corpus.queries)) == serial


def test_reopen_from_disk_gives_the_same_results(tmp_path: Path, corpus: Corpus) -> None:
    with EdgeIndex.create(tmp_path / "v1", "v1", FIELDS) as idx:
        idx.upsert(corpus.products, corpus.splade, corpus.bm25)
        before = [idx.search(q) for q in corpus.queries]
    with EdgeIndex.open(tmp_path / "v1", "v1") as reopened:
        assert reopened.count() == len(corpus.products)
        assert [reopened.search(q) for q in corpus.queries] == before


def test_upsert_replaces_by_product_id(index: EdgeIndex, corpus: Corpus) -> None:
    product = Product("sku-0", "new title", {"title": "new title", "brand": "acme", "price": 1.0})
    index.upsert([product], [corpus.splade[0]], [corpus.bm25[0]])
    assert index.count() == len(corpus.products)
    assert point_id("sku-0") == point_id("sku-0") != point_id("sku-1")


def test_create_on_existing_path_fails_unless_overwrite(tmp_path: Path, index: EdgeIndex) -> None:
    with pytest.raises(SearchIndexError, match="already exists"):
        EdgeIndex.create(index.path, "v1", FIELDS)
    index.close()
    with EdgeIndex.create(index.path, "v1", FIELDS, overwrite=True) as fresh:
        assert fresh.count() == 0


def test_open_missing_tells_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(SearchIndexError, match=r"flywheel index --catalog FILE"):
        EdgeIndex.open(tmp_path / "nope", "nope")


def test_misuse_is_reported(index: EdgeIndex, corpus: Corpus) -> None:
    with pytest.raises(ValueError, match="one SPLADE and one BM25 vector per product"):
        index.upsert(corpus.products[:2], corpus.splade[:1], corpus.bm25[:2])
    with pytest.raises(ValueError, match="limit"):
        index.search(corpus.queries[0], limit=0)
    index.close()
    index.close()
    with pytest.raises(SearchIndexError, match="closed"):
        index.search(corpus.queries[0])


def test_bm25_encoder_weights(corpus: Corpus) -> None:
    assert 3 <= corpus.encoder.avg_len <= 5
    assert corpus.encoder.token_count("The running shoes, running fast") == 4
    query = corpus.encoder.encode_query("Running SHOES for the runner")
    assert np.all(query.values == 1.0) and len(query) == 3
    assert np.all(np.diff(query.indices) > 0)
    (doc,) = corpus.encoder.encode_documents(["running running shoes"])
    assert sorted(doc.values.tolist()) == pytest.approx(
        [
            1.0 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 3 / corpus.encoder.avg_len)),
            2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3 / corpus.encoder.avg_len)),
        ],
        rel=1e-5,
    )
