"""The labelled guard set: a sample of human-judged queries the candidate must still serve well,
so feedback that drifts (or is poisoned) cannot pass the gate on its own terms.

The guard corpus is the judged products of the sampled queries plus distractors; each model
(production, candidate and the fixed reference) gets its own index of it, built with its own
encoder (the consistency rule), and is ranked in the serving mode.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from contextlib import nullcontext
from pathlib import Path

from retrainer.scratch import scratch_index
from services.datasets.loader import load_dataset
from services.encoding.base import SpladeEncoder
from services.evaluation.heldout import HeldOutEvaluator, HeldOutSet
from services.evaluation.report import EvalReport
from services.index.base import ProductIndex
from services.settings import Settings

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
) -> EvalReport:
    """Evaluate every model of ``models`` (system name -> (version, encoder)) on ``spec``'s
    sampled queries (never one of ``exclude_texts``), with paired tests against ``baseline``."""
    labelled = load_dataset(spec)
    excluded = {" ".join(t.lower().split()) for t in exclude_texts}
    allowed = [
        q for q, t in labelled.queries.items() if " ".join(t.lower().split()) not in excluded
    ]
    heldout = HeldOutSet.sample(
        labelled, among=allowed, at_most=settings.retrain.guard_queries, min_judged=2, seed=seed
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
            rrf_k=settings.search.rrf_k,
        )
        mode = settings.search.default_mode
        return evaluator.report(
            {name: (version, mode) for name, (version, _) in models.items()},
            baseline=baseline,
            dataset=f"guard:{labelled.name}",
        )
    finally:
        for index in indexes.values():
            index.close()
