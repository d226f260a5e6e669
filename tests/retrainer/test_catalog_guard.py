"""The catalog guard (known-item queries from titles): what the gate falls back on without a
labelled guard set, and that it stops a candidate that pushes one product for every query."""

from __future__ import annotations

from retrainer.catalog_guard import known_item_set
from retrainer.gate import CANDIDATE, PRODUCTION, drop_check
from services.evaluation.metrics import evaluate_runs
from services.products import Product
from services.settings import GatePolicy
from services.synthetic import generate_catalog


def overlap_run(products: list[Product], queries: dict[str, str]) -> dict[str, dict[str, float]]:
    """A lexical ranker: products scored by how many query words their title holds."""
    words = {p.id: set(p.text.lower().split()) for p in products}
    run = {}
    for qid, text in queries.items():
        terms = set(text.split())
        scored = {pid: float(len(terms & w)) for pid, w in words.items() if terms & w}
        run[qid] = dict(sorted(scored.items(), key=lambda kv: -kv[1])[:100])
    return run


def test_known_items_are_seeded_title_words_with_their_product_alone() -> None:
    products = generate_catalog(300, seed=3)
    first = known_item_set(products, at_most=50, seed=1)
    assert known_item_set(products, at_most=50, seed=1) == first
    assert known_item_set(products, at_most=50, seed=2).queries != first.queries
    assert len(first) == 50
    by_id = {p.id: p for p in products}
    for qid, text in first.queries.items():
        (pid,) = first.qrels[qid]
        assert first.qrels[qid] == {pid: 1}
        words = text.split()
        assert 2 <= len(words) <= 4
        title = by_id[pid].text.lower()
        assert all(w in title for w in words), (text, title)
    one_word = [Product(id="x", text="Hammer"), *products[:3]]
    assert "known-item-x" not in known_item_set(one_word, at_most=10).queries


def test_the_catalog_guard_rejects_a_candidate_that_pushes_one_product() -> None:
    products = generate_catalog(400, seed=5)
    known = known_item_set(products, at_most=200)
    honest = overlap_run(products, known.queries)
    target = products[0].id
    pushed = {q: {target: 1e9, **ranked} for q, ranked in honest.items()}
    policy = GatePolicy()

    def check(candidate_run: dict[str, dict[str, float]]) -> bool:
        report = evaluate_runs(
            known.qrels, {PRODUCTION: honest, CANDIDATE: candidate_run}, baseline=PRODUCTION
        )
        return drop_check(
            report,
            policy,
            name="guard",
            evidence="catalog guard",
            control_system=PRODUCTION,
            control="v1",
            candidate="v2",
        ).passed

    assert check(honest)
    assert not check(pushed)
