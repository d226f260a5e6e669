"""Runs of each retrieval system over a labelled set: query id -> product id -> score.

* ``bm25`` — Qdrant's BM25: :class:`~services.index.bm25.Bm25Encoder` vectors in the index's
  ``bm25`` named vector, IDF applied by the engine over the indexed corpus (Robertson & Zaragoza,
  2009, "The Probabilistic Relevance Framework: BM25 and Beyond").
* ``bm25s`` — the same model scored by the ``bm25s`` library (Lucene variant, k1 = 1.5,
  b = 0.75, English stop words, Snowball English stemmer through PyStemmer): the reference
  baseline of ``shared/data/homedepot/README.md``.
* ``splade`` — a model version's SPLADE vectors (Formal et al., 2021): documents in the index's
  ``splade`` named vector, queries encoded with the version's encoder.
* ``hybrid`` — both of the above fused by the serving fusion (:mod:`services.index.fusion`: a
  convex combination of normalised scores, Bruch et al., 2023, or reciprocal rank in
  the engine, Cormack et al., 2009), exactly what ``GET /search`` serves with ``mode=hybrid``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence

from services.datasets.base import LabelledSet
from services.encoding.base import ProgressFn, SpladeEncoder
from services.errors import ConfigError
from services.evaluation.metrics import Run
from services.evaluation.runner import BATCH, rank
from services.index.base import Hit, ProductIndex
from services.index.fusion import DEFAULT_FUSION, Fusion
from services.settings import SearchMode

logger = logging.getLogger(__name__)

LIMIT = 100
"""Results per query: enough for Recall@100."""


def hits_to_run(qids: Sequence[str], results: Sequence[Sequence[Hit]]) -> Run:
    """A run from search results in query order; the first hit of a repeated product wins."""
    run: Run = {}
    for qid, hits in zip(qids, results, strict=True):
        docs: dict[str, float] = {}
        for hit in hits:
            docs.setdefault(hit.product_id, hit.score)
        run[qid] = docs
    return run


def _ranked_run(
    index: ProductIndex,
    encoder: SpladeEncoder | None,
    dataset: LabelledSet,
    qids: Sequence[str],
    *,
    mode: SearchMode,
    limit: int,
    progress: ProgressFn | None,
    prefetch_limit: int | None = None,
    fusion: Fusion = DEFAULT_FUSION,
) -> Run:
    texts = [dataset.queries[qid] for qid in qids]
    hits = rank(
        index,
        encoder,
        texts,
        mode=mode,
        limit=limit,
        fusion=fusion,
        prefetch_limit=prefetch_limit,
        progress=progress,
    )
    run = hits_to_run(qids, hits)
    empty = sum(not docs for docs in run.values())
    if empty:
        logger.info("%s: %d of %d queries returned nothing", mode, empty, len(qids))
    return run


def bm25_run(
    index: ProductIndex,
    dataset: LabelledSet,
    qids: Sequence[str],
    *,
    limit: int = LIMIT,
    progress: ProgressFn | None = None,
) -> Run:
    """Qdrant BM25 over the index's ``bm25`` vectors. A query vector is 1.0 per distinct
    analysed term whatever the document settings (k, b, avg_len), so a default encoder works."""
    return _ranked_run(index, None, dataset, qids, mode="bm25", limit=limit, progress=progress)


def splade_run(
    index: ProductIndex,
    encoder: SpladeEncoder,
    dataset: LabelledSet,
    qids: Sequence[str],
    *,
    limit: int = LIMIT,
    progress: ProgressFn | None = None,
) -> Run:
    """SPLADE over the index's ``splade`` vectors; ``encoder`` must be the version's own."""
    return _ranked_run(index, encoder, dataset, qids, mode="splade", limit=limit, progress=progress)


def hybrid_run(
    index: ProductIndex,
    encoder: SpladeEncoder,
    dataset: LabelledSet,
    qids: Sequence[str],
    *,
    limit: int = LIMIT,
    prefetch_limit: int | None = None,
    fusion: Fusion = DEFAULT_FUSION,
    progress: ProgressFn | None = None,
) -> Run:
    """SPLADE and BM25 fused by ``fusion`` (:mod:`services.index.fusion`).

    Each query is encoded by ``encoder`` (the version's own) and by the BM25 query encoder, and
    answered by :meth:`ProductIndex.hybrid_search` with the serving defaults (each candidate
    list ``max(prefetch_limit, limit)`` deep, by default ``fusion.depth``; pass
    ``settings.search.hybrid_fusion()``), so the figures are those of
    ``GET /search?mode=hybrid``. A query with neither vector returns nothing (scores 0).
    """
    return _ranked_run(
        index,
        encoder,
        dataset,
        qids,
        mode="hybrid",
        limit=limit,
        progress=progress,
        prefetch_limit=prefetch_limit,
        fusion=fusion,
    )


def bm25s_run(
    dataset: LabelledSet,
    qids: Sequence[str],
    *,
    limit: int = LIMIT,
    progress: ProgressFn | None = None,
) -> Run:
    """BM25 by the ``bm25s`` library over every product text of ``dataset``.

    Results with score 0 (no query term in the title) are left out: their order is arbitrary.

    Raises:
        ConfigError: ``bm25s`` or ``PyStemmer`` is not installed.
    """
    try:
        import bm25s

        stemmer = importlib.import_module("Stemmer").Stemmer("english")
    except ImportError as exc:
        raise ConfigError(
            f"the bm25s system needs bm25s and PyStemmer ({exc}); "
            "install them with `pip install bm25s PyStemmer`."
        ) from exc
    ids = [p.id for p in dataset.products]

    def tokenize(texts: list[str]) -> list[list[str]]:
        tokens = bm25s.tokenize(
            texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
        )
        return [list(t) for t in tokens]

    retriever = bm25s.BM25()
    retriever.index(tokenize([p.text for p in dataset.products]), show_progress=False)
    run: Run = {}
    k = min(limit, len(ids))
    for start in range(0, len(qids), BATCH):
        batch = list(qids[start : start + BATCH])
        docs, scores = retriever.retrieve(
            tokenize([dataset.queries[q] for q in batch]), k=k, show_progress=False
        )
        for qid, rows, values in zip(batch, docs, scores, strict=True):
            run[qid] = {ids[int(d)]: float(s) for d, s in zip(rows, values, strict=True) if s > 0}
        if progress:
            progress(len(batch))
    return run
