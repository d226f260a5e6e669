"""Hybrid fusion functions side by side: nDCG@10 and retrieval time, on one index, in one run.

For one model version of a home (``--home``, ``--model``), the labelled set's whole corpus is
indexed once in a scratch folder (``--work-dir`` keeps it for the next run), every query is
encoded once, and each fusion answers through :meth:`ProductIndex.hybrid_search`, the path
``GET /search?mode=hybrid`` takes: reciprocal rank in the engine (Cormack et al., 2009) and the
convex combination of normalised scores at several SPLADE weights (Bruch et al., 2023), with
``--normalizations max min_max`` under both normalisations side by side.
Two query samples, never mixed: ``dev`` (``--dev-seed``; queries outside the protocol's) is the
one to choose a weight on, and ``protocol`` (the 2,000 queries of ``flywheel eval``, seed 42)
is the one to report it on. nDCG@10 is paired-tested against BM25; retrieval time is the
``hybrid_search`` call alone (query encoding excluded), p50 and p99 over the protocol queries.

    python -m benchmarks.fusion --home /tmp/hd-adapt --model v2 --work-dir /tmp/fusion-v2
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from benchmarks.common import machine
from services.datasets.base import LabelledSet
from services.datasets.loader import load_dataset
from services.datasets.protocol import sample_queries
from services.encoding.versions import onnx_encoder
from services.errors import SearchIndexError
from services.evaluation.metrics import evaluate_runs
from services.evaluation.systems import LIMIT, hits_to_run
from services.index.base import ProductIndex
from services.index.bm25 import Bm25Encoder
from services.index.fusion import (
    DEFAULT_DEPTH,
    DEFAULT_NORMALIZATION,
    NORMALIZATIONS,
    Fusion,
    Normalization,
)
from services.registry import ModelRegistry
from services.settings import QdrantSettings, Settings
from services.sparse import SparseVec

logger = logging.getLogger(__name__)

WEIGHTS = (0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)


def samples(labelled: LabelledSet, queries: int, dev_seed: int) -> dict[str, list[str]]:
    """The protocol's query sample and a dev sample of as many other eligible queries."""
    protocol = sample_queries(labelled, at_most=queries, min_judged=2, seed=42)
    taken = set(protocol)
    eligible = sorted(q for q, docs in labelled.qrels.items() if len(docs) >= 2 and q not in taken)
    dev = random.Random(dev_seed).sample(eligible, min(queries, len(eligible)))
    return {"dev": dev, "protocol": protocol}


def open_or_build(
    settings: Settings, version: str, labelled: LabelledSet, work: Path
) -> ProductIndex:
    """The scratch index of ``version`` over the whole corpus (built once per ``work``)."""
    from services.index.store import index_store
    from services.indexing import document_encoder, index_products

    scratch = Settings(home=work, qdrant=QdrantSettings(), encoder=settings.encoder)
    store = index_store(scratch)
    try:
        index = store.open(version)
        if index.count() == len(labelled.products):
            return index
        index.close()
    except SearchIndexError:  # none there yet
        logger.info("no complete scratch index of %s under %s; building it", version, work)
    registry = ModelRegistry(settings.registry_dir)
    return index_products(
        scratch,
        version,
        labelled.products,
        encoder=document_encoder(settings, registry, version),
        record=False,
    )


def fusions(
    weights: Sequence[float],
    depths: Sequence[int] = (DEFAULT_DEPTH,),
    normalizations: Sequence[Normalization] = (DEFAULT_NORMALIZATION,),
) -> dict[str, Fusion]:
    """RRF (k = 60 and 2) and the convex combination at each weight and normalisation, at each
    candidate depth (named with the depth only when several are compared, and with the
    normalisation when it is not the default)."""
    out: dict[str, Fusion] = {}
    for depth in depths:
        named = f", top {depth}" if len(depths) > 1 else ""
        out |= {f"RRF k={k}{named}": Fusion("rrf", rrf_k=k, depth=depth) for k in (60, 2)}
        for how in normalizations:
            for w in weights:
                convex = Fusion("convex", w, normalization=how)  # described without the depth
                out[convex.describe() + named] = replace(convex, depth=depth)
    return out


def measure(
    index: ProductIndex,
    vectors: dict[str, tuple[SparseVec, SparseVec]],
    labelled: LabelledSet,
    qids: list[str],
    chosen: dict[str, Fusion],
) -> tuple[dict[str, float], dict[str, float], dict[str, tuple[float, float]]]:
    """(nDCG@10 by system, p against BM25 by system, retrieval ms p50/p99 by fusion)."""
    splade = [vectors[q][0] for q in qids]
    lexical = [vectors[q][1] for q in qids]
    runs = {
        "BM25": hits_to_run(qids, index.search_batch(lexical, using="bm25", limit=LIMIT)),
        "SPLADE": hits_to_run(qids, index.search_batch(splade, limit=LIMIT)),
    }
    timing: dict[str, tuple[float, float]] = {}
    for name, fusion in chosen.items():
        took: list[float] = []
        results = []
        for q in qids:
            started = time.perf_counter()
            results.append(index.hybrid_search(*vectors[q], limit=LIMIT, fusion=fusion))
            took.append(time.perf_counter() - started)
        runs[name] = hits_to_run(qids, results)
        took.sort()
        timing[name] = (1000 * statistics.median(took), 1000 * took[int(0.99 * (len(took) - 1))])
    report = evaluate_runs({q: labelled.qrels[q] for q in qids}, runs, baseline="BM25")
    means = {s: report.mean(s) for s in runs}
    p = {s: report.p_values.get(s, {}).get("ndcg@10", 1.0) for s in runs}
    return means, p, timing


Results = dict[str, tuple[dict[str, float], dict[str, float], dict[str, tuple[float, float]]]]
"""Sample name -> (nDCG@10 by system, p against BM25, retrieval ms p50/p99 by fusion)."""


def run_fusion(
    settings: Settings,
    version: str,
    labelled: LabelledSet,
    *,
    queries: int,
    dev_seed: int,
    weights: Sequence[float],
    work: Path,
    depths: Sequence[int] = (DEFAULT_DEPTH,),
    normalizations: Sequence[Normalization] = (DEFAULT_NORMALIZATION,),
) -> Results:
    """Index (or reopen) ``version`` under ``work``, encode each query once, measure both
    samples."""
    sets = samples(labelled, queries, dev_seed)
    chosen = fusions(weights, depths, normalizations)
    index = open_or_build(settings, version, labelled, work)
    try:
        # The serving path's query encoder (ONNX), as `flywheel eval` uses.
        encoder = onnx_encoder(
            ModelRegistry(settings.registry_dir), version, threads=settings.encoder.threads
        )
        bm25 = Bm25Encoder()
        texts = {q: labelled.queries[q] for qids in sets.values() for q in qids}
        vectors = {q: (encoder.encode_query(t), bm25.encode_query(t)) for q, t in texts.items()}
        return {
            name: measure(index, vectors, labelled, qids, chosen) for name, qids in sets.items()
        }
    finally:
        index.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="FLYWHEEL_HOME with the model")
    parser.add_argument("--model", default=None, help="version (default: production)")
    parser.add_argument("--dataset", default="homedepot")
    parser.add_argument("--queries", type=int, default=2000, help="per sample")
    parser.add_argument("--dev-seed", type=int, default=7)
    parser.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    parser.add_argument(
        "--depths",
        type=int,
        nargs="+",
        default=[DEFAULT_DEPTH],
        help="candidates per list (search.hybrid_depth); several: each fusion at each depth",
    )
    parser.add_argument(
        "--normalizations",
        nargs="+",
        choices=NORMALIZATIONS,
        default=[DEFAULT_NORMALIZATION],
        help="how the convex fusion scales each list (search.hybrid_normalization); several: "
        "each weight under each",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the scratch index")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    settings = Settings(home=args.home)
    registry = ModelRegistry(settings.registry_dir)
    version = args.model or registry.pointers().production
    if version is None:
        parser.error(f"{args.home} serves no model; pass --model or run `flywheel index` first")
    labelled = load_dataset(args.dataset)
    with tempfile.TemporaryDirectory(prefix="flywheel-fusion-") as tmp:
        results = run_fusion(
            settings,
            version,
            labelled,
            queries=args.queries,
            dev_seed=args.dev_seed,
            weights=args.weights,
            work=args.work_dir or Path(tmp),
            depths=args.depths,
            normalizations=args.normalizations,
        )
    print(f"\n{machine()}")
    print(
        f"{labelled.name}: {len(labelled.products):,} products; model {version} "
        f"({registry.card(version).source}); dev sample seed {args.dev_seed}, protocol seed 42, "
        f"at most {args.queries:,} queries each; nDCG@10, p: paired t-test against BM25\n"
    )
    print("| system | dev | protocol | p (protocol) | retrieve p50 / p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    dev_means = results["dev"][0]
    means, p, timing = results["protocol"]
    for system in means:
        ms = f"{timing[system][0]:.2f} / {timing[system][1]:.2f}" if system in timing else "–"
        print(
            f"| {system} | {dev_means[system]:.4f} | {means[system]:.4f} | {p[system]:.2g} | {ms} |"
        )
    convex = {s: v for s, v in dev_means.items() if s.startswith("convex")}
    best = max(convex, key=lambda s: convex[s])
    print(
        f"\nbest convex fusion on dev: {best} ({convex[best]:.4f}); on the protocol "
        f"{means[best]:.4f} against BM25 {means['BM25']:.4f} (p = {p[best]:.2g})"
    )


if __name__ == "__main__":
    main()
