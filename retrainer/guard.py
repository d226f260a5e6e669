"""The labelled guard set: a sample of human-judged queries the candidate must still serve well,
so feedback that drifts (or is poisoned) cannot pass the gate on its own terms.

The guard corpus is the judged products of the sampled queries plus distractors; each model
(production, candidate and the fixed reference) gets its own index of it, built with its own
encoder (the consistency rule), and is ranked in ``retrain.guard_mode``: by default SPLADE
alone, since a guard asks whether the model forgot, and fused with BM25 the loss is diluted
(most by the convex fusion, where BM25 weighs 0.6; README, "Gate").
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping
from contextlib import nullcontext
from pathlib import Path

from retrainer.scratch import scratch_index
from services.datasets.loader import load_dataset
from services.datasets.protocol import MIN_JUDGED
from services.encoding.base import SpladeEncoder
from services.evaluation.heldout import HeldOutEvaluator, HeldOutSet
from services.evaluation.report import EvalReport
from services.index.base import ProductIndex
from services.settings import SearchMode, Settings

DISTRACTORS = 5000
"""Unjudged products added to the guard corpus so retrieval is not trivially easy."""


def guard_report(
    settings: Settings,
    spec: str,
    scratch: Path,
    models: Mapping[str, tuple[str, SpladeEncoder]],
    *,
    baseline: str,
    exclude_texts: Collection[str] = (),
    seed: int = 42,
    min_judged: int = MIN_JUDGED,
) -> EvalReport:
    """Evaluate every model of ``models`` (system name -> (version, encoder)) on ``spec``'s
    sampled queries (never one of ``exclude_texts``; at least ``min_judged`` judged products,
    the protocol's two unless the set is known-item), with paired tests against ``baseline``."""
    labelled = load_dataset(spec)
    excluded = {" ".join(t.lower().split()) for t in exclude_texts}
    allowed = [
        q for q, t in labelled.queries.items() if " ".join(t.lower().split()) not in excluded
    ]
    heldout = HeldOutSet.sample(
        labelled,
        among=allowed,
        at_most=settings.retrain.guard_queries,
        min_judged=min_judged,
        seed=seed,
    )
    judged = {pid for grades in heldout.qrels.values() for pid in grades}
    others = sorted(p.id for p in labelled.products if p.id not in judged)
    keep = judged | set(random.Random(seed).sample(others, min(DISTRACTORS, len(others))))
    products = [p for p in labelled.products if p.id in keep]
    indexes: dict[str, ProductIndex] = {}
    encoders = dict(models.values())
    try:
        for version, encoder in encoders.items():
            indexes[version] = scratch_index(
                settings, scratch / "guard", version, products, encoder
            )
        evaluator = HeldOutEvaluator(
            heldout,
            encoder=encoders.__getitem__,
            open_index=lambda version: nullcontext(indexes[version]),
            fusion=settings.search.hybrid_fusion(),
        )
        mode = settings.retrain.guard_mode
        return evaluator.report(
            {name: (version, mode) for name, (version, _) in models.items()},
            baseline=baseline,
            dataset=f"guard:{labelled.name}",
        )
    finally:
        for index in indexes.values():
            index.close()


def guard_evidence(
    settings: Settings,
    scratch: Path,
    models: Mapping[str, tuple[str, SpladeEncoder, ProductIndex]],
    catalog_guard: Callable[[], HeldOutSet],
    *,
    baseline: str,
    catalog_evidence: str,
    exclude_texts: Collection[str] = (),
    extra_systems: Mapping[str, tuple[str, SearchMode]] | None = None,
) -> tuple[EvalReport, str]:
    """The gate's guard report and what it rests on: the labelled guard set when one is
    configured (:func:`guard_spec`), else ``catalog_guard()``'s known-item queries, ranked on
    the indexes the models already have (plus ``extra_systems``, e.g. BM25 for reference)."""
    spec = guard_spec(settings)
    if spec:
        report = guard_report(
            settings,
            spec,
            scratch,
            {role: (version, encoder) for role, (version, encoder, _) in models.items()},
            baseline=baseline,
            exclude_texts=exclude_texts,
        )
        return report, f"labelled guard set {report.dataset}, {_ranked(settings)}"
    known = catalog_guard()
    encoders = {version: encoder for version, encoder, _ in models.values()}
    indexes = {version: index for version, _, index in models.values()}
    mode = settings.retrain.guard_mode
    systems: dict[str, tuple[str, SearchMode]] = {
        role: (version, mode) for role, (version, _, _) in models.items()
    }
    systems.update(extra_systems or {})
    report = HeldOutEvaluator(
        known,
        encoder=encoders.__getitem__,
        open_index=lambda version: nullcontext(indexes[version]),
        fusion=settings.search.hybrid_fusion(),
    ).report(systems, baseline=baseline, dataset=known.name)
    return report, f"{catalog_evidence}, {_ranked(settings)}"


def _ranked(settings: Settings) -> str:
    mode = settings.retrain.guard_mode
    return "the model alone (SPLADE)" if mode == "splade" else f"ranked in {mode} mode"


def guard_spec(settings: Settings) -> str | None:
    """The labelled guard set: the configured one, else the first labelled bootstrap set
    (labels the operator already trusts). None: no labelled set; the guard and reference
    checks use the catalog guard (known-item queries from titles; README, "Gate")."""
    cfg = settings.retrain
    if cfg.guard_dataset:
        return cfg.guard_dataset
    specs = [s.strip() for s in (cfg.bootstrap_dataset or "").split(",") if s.strip()]
    return specs[0] if specs else None
