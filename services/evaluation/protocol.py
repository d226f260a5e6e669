"""The offline evaluation protocol: sample queries, index the whole corpus once, run systems.

Protocol (the one of ``shared/data/homedepot/README.md``): up to ``queries`` query ids drawn by
:func:`~services.datasets.protocol.sample_queries` (at least ``min_judged`` judged products,
``seed``; every eligible query when fewer exist); the corpus is *every* product of the data
set, not only the judged ones; each system returns its top 100; metrics and tests are those of
:mod:`services.evaluation.metrics`. ``hybrid`` fuses SPLADE and BM25 in the engine with the
serving fusion ``settings.search.hybrid_fusion()``, so its figures are those of ``GET /search``.

The index is a scratch Qdrant Edge shard (SPLADE and BM25 vectors in the same points) in a
temporary folder, never a serving index, so evaluating a version cannot overwrite the index
that version serves from. Models come from the registry under ``settings.home``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from services.datasets.base import LabelledSet
from services.datasets.protocol import sample_queries
from services.encoding.base import ProgressFn, SpladeEncoder
from services.errors import ConfigError
from services.evaluation import systems as sy
from services.evaluation.metrics import DEFAULT_METRICS, Run, evaluate_runs
from services.evaluation.report import EvalReport
from services.index.base import ProductIndex
from services.index.fusion import Fusion
from services.metrics import OFFLINE_NDCG
from services.registry import ModelRegistry
from services.settings import EncoderSettings, QdrantSettings, Settings
from services.sparse import SparseVec

logger = logging.getLogger(__name__)

SYSTEMS = ("bm25", "bm25s", "splade", "hybrid")
MODEL_SYSTEMS = frozenset({"splade", "hybrid"})
"""Systems that need a model version (the others need none)."""
INDEX_SYSTEMS = frozenset({"bm25"}) | MODEL_SYSTEMS
"""Systems answered by the scratch Qdrant index."""
ProgressCallback = Callable[[str, int, int], None]
"""Called as ``(stage, advance, total)``; stages: ``index`` (products) and one per system
(queries)."""


class _NoSplade:
    """Document encoder of a BM25-only index: empty SPLADE vectors, which are not stored."""

    def encode_query(self, text: str) -> SparseVec:
        return SparseVec.from_lists([], [])

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: ProgressFn | None = None
    ) -> list[SparseVec]:
        if progress:
            progress(len(texts))
        return [SparseVec.from_lists([], [])] * len(texts)


def parse_systems(systems: str | Sequence[str]) -> list[str]:
    """``"bm25, splade"`` or a list -> known system names in order, without repeats.

    Raises:
        ConfigError: none given or an unknown name.
    """
    names = systems.split(",") if isinstance(systems, str) else list(systems)
    chosen = list(dict.fromkeys(s.strip().lower() for s in names if s.strip()))
    unknown = [s for s in chosen if s not in SYSTEMS]
    if unknown or not chosen:
        raise ConfigError(
            f"unknown systems {unknown or names!r}; choose from {', '.join(SYSTEMS)}."
        )
    return chosen


def resolve_version(registry: ModelRegistry, model: str, encoder: EncoderSettings) -> str:
    """``model`` if it names a version; else the newest untrained version registered from that
    checkpoint ('bundled', a path); else register it now (needs the training extra)."""
    versions = registry.versions()
    if model in versions:
        return model
    for version in reversed(versions):
        card = registry.card(version)
        if card.source == model and card.parent is None and not card.training:
            return version
    from services.encoding.package import register_pretrained

    card = register_pretrained(registry, model, encoder)
    logger.info("registered %s as %s for evaluation", model, card.version)
    return card.version


def _query_encoder(settings: Settings, registry: ModelRegistry, version: str) -> SpladeEncoder:
    """The version's ONNX encoder: the serving path's query encoder."""
    from services.encoding.versions import onnx_encoder

    return onnx_encoder(registry, version, threads=settings.encoder.threads)


def _index_run(
    system: str,
    index: ProductIndex,
    encoder: SpladeEncoder | None,
    dataset: LabelledSet,
    qids: Sequence[str],
    *,
    fusion: Fusion,
    progress: ProgressFn | None,
) -> Run:
    """The run of one of :data:`INDEX_SYSTEMS`; ``encoder`` is the version's (None for bm25)."""
    if system == "bm25":
        return sy.bm25_run(index, dataset, qids, progress=progress)
    assert encoder is not None, f"{system} needs a model version"
    if system == "splade":
        return sy.splade_run(index, encoder, dataset, qids, progress=progress)
    return sy.hybrid_run(index, encoder, dataset, qids, fusion=fusion, progress=progress)


def evaluate_dataset(
    settings: Settings,
    dataset: LabelledSet,
    systems: Sequence[str],
    *,
    queries: int = 2000,
    seed: int = 42,
    min_judged: int = 2,
    model: str = "bundled",
    progress: ProgressCallback | None = None,
    work_dir: Path | None = None,
) -> EvalReport:
    """Evaluate ``systems`` (from :data:`SYSTEMS`) on ``dataset``; see the module docstring.

    ``model`` is a registry version or a checkpoint to register ('bundled', a path) and is used
    only by ``splade`` and ``hybrid``. ``queries`` is a maximum. The baseline of the tests is
    ``bm25`` (else ``bm25s``, else the first). ``work_dir`` keeps the scratch index there
    instead of a removed temporary folder.

    Raises:
        FlywheelError: unknown system, no eligible query, model or index failures.
    """
    chosen = parse_systems(systems)
    qids = sample_queries(dataset, at_most=queries, min_judged=min_judged, seed=seed)
    qrels = {qid: dataset.qrels[qid] for qid in qids}
    protocol: dict[str, object] = {
        "queries": len(qids),
        "seed": seed,
        "min_judged": min_judged,
        "corpus": len(dataset.products),
        "top_k": sy.LIMIT,
        "grade": dataset.notes.get("grade", f"0..{dataset.max_grade}"),
    }
    if "hybrid" in chosen:
        protocol["fusion"] = settings.search.hybrid_fusion().describe()
    timings: dict[str, float] = {}

    def report_to(stage: str, total: int) -> ProgressFn | None:
        return (lambda n: progress(stage, n, total)) if progress else None

    registry = ModelRegistry(settings.registry_dir)
    version = (
        resolve_version(registry, model, settings.encoder) if MODEL_SYSTEMS & set(chosen) else None
    )
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="flywheel-eval-") as tmp:
        home = work_dir or Path(tmp)
        scratch = Settings(home=home, qdrant=QdrantSettings(), encoder=settings.encoder)
        started = time.perf_counter()
        if "bm25s" in chosen:
            runs["bm25s"] = sy.bm25s_run(dataset, qids, progress=report_to("bm25s", len(qids)))
            timings["bm25s"] = time.perf_counter() - started
        if INDEX_SYSTEMS & set(chosen):
            from services.indexing import document_encoder, index_products

            started = time.perf_counter()
            doc_encoder = document_encoder(settings, registry, version) if version else _NoSplade()
            index = index_products(
                scratch,
                version or "bm25",
                dataset.products,
                encoder=doc_encoder,
                progress=report_to("index", len(dataset.products)),
                record=False,
            )
            timings["index"] = time.perf_counter() - started
            try:
                encoder = _query_encoder(settings, registry, version) if version else None
                for system in (s for s in chosen if s in INDEX_SYSTEMS):
                    started = time.perf_counter()
                    runs[system] = _index_run(
                        system,
                        index,
                        encoder,
                        dataset,
                        qids,
                        fusion=settings.search.hybrid_fusion(),
                        progress=report_to(system, len(qids)),
                    )
                    timings[system] = time.perf_counter() - started
            finally:
                index.close()
    if version:
        protocol["model"] = f"{version} ({registry.card(version).source})"
    protocol["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    ordered = {s: runs[s] for s in chosen}
    baseline = next((b for b in ("bm25", "bm25s") if b in ordered), chosen[0])
    report = evaluate_runs(
        qrels,
        ordered,
        metrics=DEFAULT_METRICS,
        baseline=baseline,
        dataset=dataset.name,
        protocol=protocol,
    )
    if version and "splade" in report.systems:
        OFFLINE_NDCG.labels(model_version=version, dataset=dataset.name).set(report.mean("splade"))
    logger.info("evaluated %s on %d queries of %s", ", ".join(chosen), len(qids), dataset.name)
    return report
