"""Hard negatives for generated queries: BM25-mined, filtered for false negatives.

GPL (Wang et al., 2022, "Generative Pseudo Labeling for Unsupervised Domain Adaptation of
Dense Retrieval") mines negatives for generated queries from a retriever's top results; with
no labels, some of those are relevant too (RocketQA, Qu et al., 2021, measured how often), and
training on them as negatives teaches the model to push away what it should find. A product
title query has many relevant products, so the candidates from BM25's top ``depth`` (over the
catalog texts, by ``bm25s``: Lucene BM25, English stop words and stemmer) are dropped when:

* their text contains every analysed term of the query (they match it as well as the positive);
* they share the positive's brand and category (payload fields, when both are present);
* they score within ``margin`` of the positive (at least ``(1 - margin)`` times its score).

The negative is drawn (seeded) among the survivors; when none survives, a random catalog
product that passes the first two tests (and is not the positive) stands in (counted).
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from retrainer.adapt.queries import QueryPair
from services.errors import ConfigError
from services.products import Product

Progress = Callable[[int, int], None]
BATCH = 256
RANDOM_TRIES = 20


class Triple(NamedTuple):
    """A generated query, its positive and one negative (ids), and how the negative was found."""

    query: str
    positive_id: str
    negative_id: str
    source: str
    """``bm25`` (mined) or ``random`` (the fallback)."""


@dataclass(slots=True)
class MiningStats:
    """How many candidates each filter dropped, and how negatives were found."""

    bm25: int = 0
    random: int = 0
    none: int = 0
    dropped: dict[str, int] = field(
        default_factory=lambda: {"all_terms": 0, "brand_category": 0, "margin": 0, "same": 0}
    )


def _tokenizer() -> Callable[[list[str]], list[list[str]]]:
    try:
        import bm25s

        stemmer = importlib.import_module("Stemmer").Stemmer("english")
    except ImportError as exc:
        raise ConfigError(
            f"mining negatives needs bm25s and PyStemmer ({exc}); "
            "install them with `pip install bm25s PyStemmer`."
        ) from exc

    def tokenize(texts: list[str]) -> list[list[str]]:
        tokens = bm25s.tokenize(
            texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
        )
        return [list(t) for t in tokens]

    return tokenize


def _facet(product: Product) -> tuple[str, str] | None:
    brand, category = product.payload.get("brand"), product.payload.get("category")
    if isinstance(brand, str) and isinstance(category, str) and brand and category:
        return brand.lower(), category.lower()
    return None


class NegativeMiner:
    """BM25 over ``products``' texts, and the false-negative filters above."""

    def __init__(
        self, products: Sequence[Product], *, depth: int = 100, margin: float = 0.1, seed: int = 42
    ) -> None:
        import bm25s

        if len(products) < 2:
            raise ConfigError("mining negatives needs a catalog of at least two products.")
        self.products = list(products)
        self.position = {p.id: i for i, p in enumerate(self.products)}
        self.depth = min(depth, len(self.products))
        self.margin = margin
        self.rng = random.Random(seed)
        self.tokenize = _tokenizer()
        self.doc_terms = [set(t) for t in self.tokenize([p.text for p in self.products])]
        self.retriever: Any = bm25s.BM25()
        self.retriever.index(self.tokenize([p.text for p in self.products]), show_progress=False)

    def rejects(self, terms: set[str], positive: int, candidate: int) -> str | None:
        """Why ``candidate`` may not be a negative for ``positive`` (None: it may)."""
        pos, cand = self.products[positive], self.products[candidate]
        if candidate == positive or cand.text == pos.text:
            return "same"
        if terms and terms <= self.doc_terms[candidate]:
            return "all_terms"
        facet = _facet(pos)
        if facet is not None and facet == _facet(cand):
            return "brand_category"
        return None

    def _pick(
        self, terms: list[str], positive: int, docs: np.ndarray, scores: np.ndarray, k: int
    ) -> tuple[list[int], MiningStats]:
        stats = MiningStats()
        wanted = set(terms)
        hits = dict(zip(docs.tolist(), scores.tolist(), strict=True))
        pos_score = hits.get(positive)
        if pos_score is None:
            pos_score = float(self.retriever.get_scores(terms)[positive]) if terms else 0.0
        survivors = []
        for doc, score in hits.items():
            if score <= 0:
                continue
            reason = self.rejects(wanted, positive, doc)
            if reason is None and pos_score > 0 and score >= (1 - self.margin) * pos_score:
                reason = "margin"
            if reason is None:
                survivors.append(doc)
            elif doc != positive:
                stats.dropped[reason] += 1
        chosen = self.rng.sample(survivors, min(k, len(survivors)))
        stats.bm25 = len(chosen)
        while len(chosen) < k:
            fallback = self._random(wanted, positive, chosen)
            if fallback is None:
                stats.none += k - len(chosen)
                break
            chosen.append(fallback)
            stats.random += 1
        return chosen, stats

    def _random(self, terms: set[str], positive: int, taken: list[int]) -> int | None:
        for _ in range(RANDOM_TRIES):
            doc = self.rng.randrange(len(self.products))
            if doc not in taken and self.rejects(terms, positive, doc) is None:
                return doc
        return None

    def mine(
        self, pairs: Sequence[QueryPair], *, per_query: int, progress: Progress | None = None
    ) -> tuple[list[Triple], MiningStats]:
        """``per_query`` negatives for every pair whose product is in the catalog."""
        total = MiningStats()
        triples: list[Triple] = []
        usable = [p for p in pairs if p.product_id in self.position]
        for start in range(0, len(usable), BATCH):
            batch = usable[start : start + BATCH]
            tokens = self.tokenize([p.query for p in batch])
            # A query of stop words only has no BM25 terms: nothing to retrieve (bm25s would
            # log a line per query), so its negatives are random ones.
            found = [i for i, terms in enumerate(tokens) if terms]
            nothing = (np.empty(0, dtype=np.int64), np.empty(0))
            rows = [nothing] * len(batch)
            if found:
                docs, scores = self.retriever.retrieve(
                    [tokens[i] for i in found], k=self.depth, show_progress=False
                )
                for i, row, values in zip(found, docs, scores, strict=True):
                    rows[i] = (row, values)
            for pair, terms, (row, values) in zip(batch, tokens, rows, strict=True):
                positive = self.position[pair.product_id]
                chosen, stats = self._pick(terms, positive, row, values, per_query)
                total.bm25 += stats.bm25
                total.random += stats.random
                total.none += stats.none
                for reason, n in stats.dropped.items():
                    total.dropped[reason] += n
                triples.extend(
                    Triple(
                        pair.query,
                        pair.product_id,
                        self.products[doc].id,
                        "bm25" if i < stats.bm25 else "random",
                    )
                    for i, doc in enumerate(chosen)
                )
            if progress:
                progress(min(start + BATCH, len(usable)), len(usable))
        return triples, total
