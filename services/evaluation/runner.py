"""The one batched search loop: many query texts through one model version's encoder and index.

Every offline consumer of rankings (held-out evaluation, the gate, the simulated shoppers, the
benchmarks) goes through :func:`rank`, so they all rank exactly as ``GET /search`` does in the
same mode: the version's own query encoder and index (the consistency rule), BM25 through the
index's ``bm25`` vectors, and hybrid with the serving fusion (:mod:`services.index.fusion`).

Query encoding is the costly part on a CPU; distinct texts are encoded once, in a thread pool
(ONNX Runtime releases the GIL), then searched in batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from services.encoding.base import ProgressFn, SpladeEncoder
from services.index.base import Hit, ProductIndex
from services.index.bm25 import Bm25Encoder
from services.index.fusion import DEFAULT_FUSION, Fusion
from services.settings import SearchMode
from services.sparse import SparseVec

BATCH = 250
"""Queries per ``search_batch`` call (also the progress step)."""


def encode_all(
    encode: Callable[[str], SparseVec], texts: Sequence[str], *, workers: int = 0
) -> dict[str, SparseVec]:
    """Each distinct text encoded once (``workers`` threads; 0: one per core)."""
    distinct = list(dict.fromkeys(texts))
    threads = workers or os.cpu_count() or 1
    if threads == 1 or len(distinct) < 2 * threads:
        return {t: encode(t) for t in distinct}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(zip(distinct, pool.map(encode, distinct), strict=True))


def rank(
    index: ProductIndex,
    encoder: SpladeEncoder | None,
    texts: Sequence[str],
    *,
    mode: SearchMode,
    limit: int,
    fusion: Fusion = DEFAULT_FUSION,
    prefetch_limit: int | None = None,
    workers: int = 0,
    progress: ProgressFn | None = None,
) -> list[list[Hit]]:
    """The hits of every text in ``texts`` (in order), as ``GET /search?mode=`` ranks them.

    ``encoder`` is the version's own query encoder (unused, and may be None, in bm25 mode).
    Hybrid fuses candidate lists ``max(prefetch_limit, limit)`` deep (by default
    ``fusion.depth``, as served).
    """
    splade: dict[str, SparseVec] = {}
    if mode != "bm25":
        if encoder is None:
            raise ValueError(f"mode {mode!r} needs the version's query encoder")
        splade = encode_all(encoder.encode_query, texts, workers=workers)
    bm25 = Bm25Encoder()
    lexical = {t: bm25.encode_query(t) for t in dict.fromkeys(texts)} if mode != "splade" else {}
    out: list[list[Hit]] = []
    for start in range(0, len(texts), BATCH):
        batch = texts[start : start + BATCH]
        if mode == "hybrid":
            out += [
                index.hybrid_search(
                    splade[t],
                    lexical[t],
                    limit=limit,
                    prefetch_limit=prefetch_limit,
                    fusion=fusion,
                )
                for t in batch
            ]
        elif mode == "splade":
            out += index.search_batch([splade[t] for t in batch], using="splade", limit=limit)
        else:
            out += index.search_batch([lexical[t] for t in batch], using="bm25", limit=limit)
        if progress:
            progress(len(batch))
    return out
