"""The canary controller: promote or roll back the canary from what shoppers did.

Offline gates are necessary, not sufficient: whether a candidate is better is decided on
shoppers. The default judge is team-draft interleaving (Radlinski et al., 2008): canary-bucket
sessions see the canary's and production's rankings interleaved, and the canary wins a list
when its results got more engagement (Chapelle et al., 2012 found interleaving 10-100x more
sensitive than comparing A/B metrics). The A/B judge compares mean online nDCG@10 of the
canary arm with production's. benchmarks/decisions.py measures both against the simulator's
true grades; its evidence chose the defaults.

The controller looks at every snapshot, so its test must stay valid under repeated looks: by
default a mixture sequential probability ratio test (:mod:`services.evaluation.sequential`),
which promotes only a canary shown to be better and rolls back one shown to be worse; a canary
still undecided after ``max_lists_per_arm`` is rolled back as inconclusive. The fixed z-test
(``test = 'fixed'``) is what the controller did before and is kept to be measured.

Decisions are applied by compare-and-swap on the versions judged, recorded with their figures
in ``registry/canary_decisions.jsonl`` (:mod:`services.decisions`) and exported as metrics.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from services.decisions import (
    ArmStats,
    CanaryDecision,
    CanaryVerdict,
    InterleavingStats,
    append_canary_decision,
    read_canary_decisions,
)
from services.errors import RegistryError
from services.evaluation.sequential import Verdict, msprt_bernoulli, msprt_normal
from services.metrics import CANARY_DECISIONS, CANARY_NDCG_DIFF
from services.pvalues import p_text
from services.registry import Expected, ModelRegistry
from services.settings import CanaryPolicy, Settings
from services.snapshots import Snapshot

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Judgement:
    """What a judge concluded from the evidence so far."""

    decision: CanaryVerdict
    reason: str
    difference: float
    lower: float
    upper: float
    p_value: float | None
    evidence: int


def arm_stats(snapshot: Snapshot, version: str, arm: str) -> ArmStats:
    """Per-list online nDCG@10 of ``version`` served on ``arm`` in a snapshot."""
    online = snapshot.online_arm(version, arm)
    return ArmStats(
        version=version,
        lists=online.lists,
        mean=online.mean,
        variance=online.variance,
        ctr_at_10=online.ctr_at_10,
    )


def _from_verdict(verdict: Verdict) -> CanaryVerdict:
    return "promote" if verdict == "better" else "rollback" if verdict == "worse" else "wait"


def _from_bounds(lower: float, upper: float, policy: CanaryPolicy) -> CanaryVerdict:
    """The fixed test's rule: significantly worse rolls back; better (or, without
    ``require_better``, not worse by more than the margin) promotes."""
    if upper < 0:
        return "rollback"
    if (lower > 0) if policy.require_better else (lower > -policy.margin):
        return "promote"
    return "wait"


def _words(decision: CanaryVerdict, text: str, bounds: str) -> str:
    lead = {"promote": "canary is better", "rollback": "canary is worse", "wait": "undecided"}
    return f"{lead[decision]}: {text}, {bounds}"


def judge_ab(production: ArmStats, canary: ArmStats, policy: CanaryPolicy) -> Judgement:
    """Mean online nDCG@10 of the canary arm against production's (Welch's difference)."""
    diff = canary.mean - production.mean
    evidence = min(production.lists, canary.lists)
    text = (
        f"online nDCG@10 {canary.mean:.4f} ({canary.lists} lists) vs "
        f"{production.mean:.4f} ({production.lists}), difference {diff:+.4f}"
    )
    if evidence < policy.min_lists_per_arm:
        return Judgement(
            "wait",
            f"{canary.lists} canary and {production.lists} production lists; need "
            f"{policy.min_lists_per_arm} per arm",
            diff,
            -math.inf,
            math.inf,
            None,
            evidence,
        )
    variance = canary.variance / canary.lists + production.variance / production.lists
    if policy.test == "sequential":
        result = msprt_normal(diff, variance, evidence, tau=policy.effect_ndcg, alpha=policy.alpha)
        decision = _from_verdict(result.verdict)
        bounds = (
            f"always-valid {p_text(result.p_value)}, [{result.lower:+.4f}, {result.upper:+.4f}]"
        )
        return Judgement(
            decision,
            _words(decision, text, bounds),
            diff,
            result.lower,
            result.upper,
            result.p_value,
            evidence,
        )
    se = math.sqrt(variance)
    lower, upper = diff - policy.z * se, diff + policy.z * se
    decision = _from_bounds(lower, upper, policy)
    bounds = f"z-bound [{lower:+.4f}, {upper:+.4f}]"
    return Judgement(decision, _words(decision, text, bounds), diff, lower, upper, None, evidence)


def judge_interleaving(stats: InterleavingStats, policy: CanaryPolicy) -> Judgement:
    """The canary's share of decided team-draft interleaved lists against 1/2."""
    wins, losses, decided = stats.wins, stats.losses, stats.decided
    share = wins / decided if decided else 0.5
    text = (
        f"canary won {wins} and lost {losses} of {stats.lists} interleaved lists "
        f"({share:.1%} of those decided)"
    )
    if decided < policy.min_lists_per_arm:
        return Judgement(
            "wait",
            f"{decided} interleaved lists decided a winner; need {policy.min_lists_per_arm}",
            share - 0.5,
            -math.inf,
            math.inf,
            None,
            decided,
        )
    if policy.test == "sequential":
        result = msprt_bernoulli(wins, losses, prior_sd=policy.effect_share, alpha=policy.alpha)
        decision = _from_verdict(result.verdict)
        bounds = (
            f"always-valid {p_text(result.p_value)}, [{result.lower:+.3f}, {result.upper:+.3f}]"
        )
        return Judgement(
            decision,
            _words(decision, text, bounds),
            result.estimate,
            result.lower,
            result.upper,
            result.p_value,
            decided,
        )
    se = math.sqrt(max(share * (1 - share), 1e-12) / decided)
    diff = share - 0.5
    lower, upper = diff - policy.z * se, diff + policy.z * se
    decision = _from_bounds(lower, upper, policy)
    bounds = f"z-bound [{lower:+.3f}, {upper:+.3f}]"
    return Judgement(decision, _words(decision, text, bounds), diff, lower, upper, None, decided)


def judge(
    policy: CanaryPolicy,
    *,
    production: ArmStats,
    canary: ArmStats,
    interleaving: InterleavingStats,
) -> Judgement:
    """The configured judge, bounded: undecided after ``max_lists_per_arm`` means rollback."""
    if policy.judge == "interleaving":
        verdict = judge_interleaving(interleaving, policy)
    else:
        verdict = judge_ab(production, canary, policy)
    limit = policy.max_lists_per_arm
    if verdict.decision == "wait" and limit and verdict.evidence >= limit:
        return Judgement(
            "rollback",
            f"inconclusive after {verdict.evidence} lists per arm ({verdict.reason})",
            verdict.difference,
            verdict.lower,
            verdict.upper,
            verdict.p_value,
            verdict.evidence,
        )
    return verdict


def run_controller(settings: Settings, *, apply: bool = True) -> CanaryDecision:
    """Decide on the current canary from the latest snapshot; apply and record the decision.

    Applying is a compare-and-swap on the versions judged: if an operator or another
    controller changed the pointers meanwhile, nothing changes and the decision says so.
    """
    registry = ModelRegistry(settings.registry_dir)
    pointers = registry.pointers()
    policy = settings.retrain.canary
    if pointers.canary is None or pointers.production is None:
        return CanaryDecision(decision="wait", reason="no canary is running", policy=policy)
    snapshot = Snapshot.latest(settings.exports_dir)
    if snapshot is None:
        return CanaryDecision(decision="wait", reason="no snapshot yet", policy=policy)
    prod, cand = pointers.production, pointers.canary
    production = arm_stats(snapshot, prod, "production")
    canary = arm_stats(snapshot, cand, "canary")
    record = snapshot.interleaving(cand, prod)
    interleaving = InterleavingStats(
        lists=record.lists, wins=record.wins, losses=record.losses, ties=record.ties
    )
    verdict = judge(policy, production=production, canary=canary, interleaving=interleaving)
    # The judge and the servers disagree on how the canary is shown (a canary arm without
    # interleaving, or interleaved lists for the A/B judge): its evidence never grows, so the
    # list bound applies to the lists served in the other form instead of waiting forever.
    hint = (
        "; the servers do not interleave (FLYWHEEL_SEARCH__INTERLEAVING=false): set it, or "
        "judge on A/B (FLYWHEEL_RETRAIN__CANARY__JUDGE=ab)"
        if policy.judge == "interleaving"
        else "; the servers interleave the canary (FLYWHEEL_SEARCH__INTERLEAVING=true): judge "
        "on interleaving (FLYWHEEL_RETRAIN__CANARY__JUDGE=interleaving), or turn it off"
    )
    other = canary.lists if policy.judge == "interleaving" else interleaving.lists
    reason = verdict.reason + (hint if other and not verdict.evidence else "")
    limit = policy.max_lists_per_arm
    if verdict.decision == "wait" and not verdict.evidence and limit and other >= limit:
        verdict = Judgement(
            "rollback",
            f"no evidence for the {policy.judge} judge after {other} lists",
            *(verdict.difference, verdict.lower, verdict.upper, verdict.p_value, 0),
        )
        reason = verdict.reason + hint
    decision = CanaryDecision(
        decision=verdict.decision,
        reason=reason,
        signal=policy.judge,
        test=policy.test,
        production_version=prod,
        canary_version=cand,
        snapshot=snapshot.name,
        production=production,
        canary=canary,
        interleaving=interleaving,
        difference=verdict.difference,
        lower=verdict.lower if math.isfinite(verdict.lower) else None,
        upper=verdict.upper if math.isfinite(verdict.upper) else None,
        p_value=verdict.p_value,
        evidence=verdict.evidence,
        policy=policy,
    )
    if apply and decision.decision != "wait":
        try:
            _apply(registry, decision)
        except RegistryError as exc:
            logger.warning("canary %s not applied: %s", decision.decision, exc)
            return decision.model_copy(
                update={"decision": "wait", "reason": f"not applied: {exc} ({reason})"}
            )
    CANARY_DECISIONS.labels(decision=decision.decision).inc()
    for bound, value in (("estimate", verdict.difference), ("lower", verdict.lower)):
        if math.isfinite(value):
            CANARY_NDCG_DIFF.labels(bound=bound).set(value)
    if math.isfinite(verdict.upper):
        CANARY_NDCG_DIFF.labels(bound="upper").set(verdict.upper)
    if decision.decision != "wait":
        append_canary_decision(registry.root, decision)
    logger.info("canary %s: %s", decision.decision, decision.reason)
    return decision


def _apply(registry: ModelRegistry, decision: CanaryDecision) -> None:
    """Promote or roll back exactly the versions judged: compare-and-swap under the registry
    lock, so a canary replaced while it was judged is left alone."""
    judged = Expected(decision.production_version, decision.canary_version)
    if decision.decision == "promote":
        registry.promote(decision.canary_version, actor="canary-controller", expect=judged)
    else:
        registry.clear_canary(actor="canary-controller", expect=judged)


def decisions(registry: ModelRegistry) -> list[CanaryDecision]:
    """The decisions recorded in the log's last 256 KiB (``TAIL_BYTES``), oldest first."""
    return read_canary_decisions(registry.root)
