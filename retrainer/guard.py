"""The labelled guard set: a sample of human-judged queries both models must still serve well,
so feedback that drifts (or is inverted) cannot pass the gate on its own terms."""

from __future__ import annotations

import random
from pathlib import Path

from retrainer.gate import compare
from retrainer.scratch import scratch_index
from services.datasets.loader import load_dataset
from services.datasets.protocol import sample_queries
from services.encoding.base import SpladeEncoder
from services.evaluation.report import EvalReport
from services.settings import Settings

DISTRACTORS = 5000
"""Unjudged products added to the guard corpus so retrieval is not trivially easy."""


def guard_report(
    settings: Settings,
    spec: str,
    scratch: Path,
    production: tuple[str, SpladeEncoder],
    candidate: tuple[str, SpladeEncoder],
    *,
    seed: int = 42,
) -> EvalReport:
    """Evaluate both models on ``spec``'s sampled queries over the judged products plus
    distractors, each model on an index built with its own encoder."""
    labelled = load_dataset(spec)
    qids = sample_queries(labelled, at_most=settings.retrain.guard_queries, min_judged=2, seed=seed)
    judged = {pid for qid in qids for pid in labelled.qrels[qid]}
    others = sorted(p.id for p in labelled.products if p.id not in judged)
    keep = judged | set(random.Random(seed).sample(others, min(DISTRACTORS, len(others))))
    products = [p for p in labelled.products if p.id in keep]
    queries = {qid: labelled.queries[qid] for qid in qids}
    qrels = {qid: labelled.qrels[qid] for qid in qids}
    indexes = []
    try:
        for name, encoder in (production, candidate):
            indexes.append(scratch_index(settings, scratch / "guard", name, products, encoder))
        return compare(
            qrels,
            queries,
            (production[1], indexes[0]),
            (candidate[1], indexes[1]),
            dataset=f"guard:{labelled.name}",
        )
    finally:
        for index in indexes:
            index.close()
