"""The gate: a candidate replaces production only on a significant held-out nDCG@10 gain with
no regression on a labelled guard set (Järvelin & Kekäläinen, 2002, for nDCG).

Both models retrieve from their own index (the consistency rule), on the same queries.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from services.datasets.base import Qrels
from services.encoding.base import SpladeEncoder
from services.evaluation.metrics import evaluate_runs
from services.evaluation.report import EvalReport
from services.evaluation.systems import hits_to_run
from services.index.base import ProductIndex
from services.settings import GatePolicy

PRODUCTION = "production"
CANDIDATE = "candidate"
PRIMARY = "ndcg@10"
QUERY_BATCH = 256


class GateDecision(BaseModel):
    """A recorded decision with the figures it rests on."""

    passed: bool
    reasons: list[str]
    production: str
    candidate: str
    decided_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    heldout_queries: int
    heldout: dict[str, float] = Field(description="nDCG@10 of production and candidate")
    gain: float
    p_value: float
    heldout_metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="model -> metric -> mean (nDCG@10, MRR@10, Recall@100)"
    )
    heldout_p_values: dict[str, float] = Field(
        default_factory=dict, description="metric -> paired t-test p-value, candidate vs production"
    )
    guard: dict[str, float] | None = None
    guard_drop: float | None = None
    policy: GatePolicy


def run_model(
    encoder: SpladeEncoder, index: ProductIndex, queries: dict[str, str], limit: int = 100
) -> dict[str, dict[str, float]]:
    """Top ``limit`` products per query id from one model's own index."""
    qids = sorted(queries)
    run: dict[str, dict[str, float]] = {}
    for start in range(0, len(qids), QUERY_BATCH):
        batch = qids[start : start + QUERY_BATCH]
        vectors = [encoder.encode_query(queries[q]) for q in batch]
        run.update(hits_to_run(batch, index.search_batch(vectors, limit=limit)))
    return run


def compare(
    qrels: Qrels,
    queries: dict[str, str],
    production: tuple[SpladeEncoder, ProductIndex],
    candidate: tuple[SpladeEncoder, ProductIndex],
    *,
    dataset: str,
) -> EvalReport:
    """nDCG@10, MRR@10, Recall@100 of both models with paired t-tests (production = control)."""
    runs = {
        PRODUCTION: run_model(*production, queries),
        CANDIDATE: run_model(*candidate, queries),
    }
    return evaluate_runs(qrels, runs, baseline=PRODUCTION, dataset=dataset)


def decide(
    heldout: EvalReport | None,
    guard: EvalReport | None,
    policy: GatePolicy,
    *,
    production: str,
    candidate: str,
) -> GateDecision:
    """Apply the policy; every failed rule is listed in ``reasons``."""
    reasons: list[str] = []
    if heldout is None:
        prod = cand = 0.0
        p_value, queries = 1.0, 0
    else:
        prod, cand = heldout.mean(PRODUCTION, PRIMARY), heldout.mean(CANDIDATE, PRIMARY)
        p_value = heldout.p_values.get(CANDIDATE, {}).get(PRIMARY, 1.0)
        queries = heldout.num_queries
    gain = cand - prod
    if queries < policy.min_heldout_queries:
        reasons.append(f"only {queries} held-out queries (< {policy.min_heldout_queries})")
    if gain < policy.min_gain:
        reasons.append(f"held-out nDCG@10 gain {gain:+.4f} < {policy.min_gain:+.4f}")
    if p_value > policy.max_p_value:
        reasons.append(f"p-value {p_value:.3g} > {policy.max_p_value}")
    guard_means = guard_drop = None
    if guard is not None:
        guard_means = {
            PRODUCTION: guard.mean(PRODUCTION, PRIMARY),
            CANDIDATE: guard.mean(CANDIDATE, PRIMARY),
        }
        guard_drop = guard_means[PRODUCTION] - guard_means[CANDIDATE]
        if guard_drop > policy.max_guard_drop:
            reasons.append(
                f"guard nDCG@10 drops by {guard_drop:.4f} (> {policy.max_guard_drop:.4f})"
            )
    return GateDecision(
        passed=not reasons,
        reasons=reasons or ["all rules passed"],
        production=production,
        candidate=candidate,
        heldout_queries=queries,
        heldout={PRODUCTION: prod, CANDIDATE: cand},
        gain=gain,
        p_value=p_value,
        heldout_metrics=heldout.means if heldout else {},
        heldout_p_values=heldout.p_values.get(CANDIDATE, {}) if heldout else {},
        guard=guard_means,
        guard_drop=guard_drop,
        policy=policy,
    )
