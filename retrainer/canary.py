"""The canary controller: promote or roll back the canary from what shoppers did.

Offline gates are necessary, not sufficient. Once each arm has served enough lists (whose
attribution windows have closed), the controller compares mean online nDCG@10 of the canary
and production arms (Welch's difference of means, normal approximation, which the minimum
list count makes reasonable): it promotes when the canary is not worse than production by
more than the margin (non-inferiority, or significantly better if so configured), rolls back
when it is significantly worse, and otherwise waits. Every decision is recorded with its
figures in ``registry/canary_decisions.jsonl`` and as metrics.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from services.metrics import CANARY_DECISIONS, CANARY_NDCG_DIFF
from services.registry import ModelRegistry
from services.settings import CanaryPolicy, Settings
from services.snapshots import Snapshot
from services.status import CANARY_DECISIONS_LOG

logger = logging.getLogger(__name__)

Decision = Literal["promote", "rollback", "wait"]


class ArmStats(BaseModel):
    """Online nDCG@10 of one arm's served lists."""

    version: str
    lists: int
    mean: float
    variance: float
    ctr_at_10: float


class CanaryDecision(BaseModel):
    """A controller decision and the figures behind it."""

    decision: Decision
    reason: str
    decided_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    snapshot: str | None = None
    production: ArmStats | None = None
    canary: ArmStats | None = None
    difference: float | None = None
    lower: float | None = None
    upper: float | None = None
    policy: CanaryPolicy


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


def judge(
    production: ArmStats, canary: ArmStats, policy: CanaryPolicy
) -> tuple[Decision, str, float, float, float]:
    """The decision for two arms: (decision, reason, difference, lower, upper)."""
    diff = canary.mean - production.mean
    if min(production.lists, canary.lists) < policy.min_lists_per_arm:
        return (
            "wait",
            (
                f"{canary.lists} canary and {production.lists} production lists; need "
                f"{policy.min_lists_per_arm} per arm"
            ),
            diff,
            -math.inf,
            math.inf,
        )
    se = math.sqrt(canary.variance / canary.lists + production.variance / production.lists)
    lower, upper = diff - policy.z * se, diff + policy.z * se
    # Significantly worse wins over "within the margin": shoppers are measurably worse off.
    if upper < 0:
        return (
            "rollback",
            f"canary is worse: difference {diff:+.4f}, bound [{lower:+.4f}, {upper:+.4f}]",
            diff,
            lower,
            upper,
        )
    if (lower > 0) if policy.require_better else (lower > -policy.margin):
        rule = "better" if policy.require_better else f"not worse than -{policy.margin}"
        return (
            "promote",
            f"canary is {rule}: difference {diff:+.4f}, bound [{lower:+.4f}, {upper:+.4f}]",
            diff,
            lower,
            upper,
        )
    return (
        "wait",
        f"undecided: difference {diff:+.4f}, bound [{lower:+.4f}, {upper:+.4f}]",
        diff,
        lower,
        upper,
    )


def judge_interleaving(
    wins: int, losses: int, policy: CanaryPolicy
) -> tuple[Decision, str, float, float, float]:
    """Team-draft interleaving: the canary's share of decided lists against 1/2 (Chapelle et
    al., 2012). The margin applies to that share; the same promote/rollback rules hold."""
    decided = wins + losses
    if decided < policy.min_lists_per_arm:
        return (
            "wait",
            (f"{decided} interleaved lists decided a winner; need {policy.min_lists_per_arm}"),
            0.0,
            -math.inf,
            math.inf,
        )
    share = wins / decided
    se = math.sqrt(max(share * (1 - share), 1e-12) / decided)
    diff, lower, upper = share - 0.5, share - 0.5 - policy.z * se, share - 0.5 + policy.z * se
    text = f"canary wins {wins} of {decided} decided interleaved lists ({share:.1%})"
    if upper < 0:
        return "rollback", f"canary is worse: {text}", diff, lower, upper
    if (lower > 0) if policy.require_better else (lower > -policy.margin):
        return "promote", f"canary holds up: {text}", diff, lower, upper
    return "wait", f"undecided: {text}", diff, lower, upper


def run_controller(settings: Settings, *, apply: bool = True) -> CanaryDecision:
    """Decide on the current canary from the latest snapshot; apply and record the decision."""
    registry = ModelRegistry(settings.registry_dir)
    pointers = registry.pointers()
    policy = settings.retrain.canary
    if pointers.canary is None or pointers.production is None:
        return CanaryDecision(decision="wait", reason="no canary is running", policy=policy)
    snapshot = Snapshot.latest(settings.exports_dir)
    if snapshot is None:
        return CanaryDecision(decision="wait", reason="no snapshot yet", policy=policy)
    production = arm_stats(snapshot, pointers.production, "production")
    canary = arm_stats(snapshot, pointers.canary, "canary")
    if settings.search.interleaving:
        # Canary-bucket sessions see interleaved lists: judge by who won them instead.
        record_ = snapshot.interleaving(pointers.canary, pointers.production)
        wins, losses = record_.wins, record_.losses
        decision, reason, diff, lower, upper = judge_interleaving(wins, losses, policy)
        evidence = wins + losses
    else:
        decision, reason, diff, lower, upper = judge(production, canary, policy)
        evidence = min(production.lists, canary.lists)
    if decision == "wait" and policy.max_lists_per_arm and evidence >= policy.max_lists_per_arm:
        decision = "rollback"
        reason = f"inconclusive after {evidence} lists per arm ({reason})"
    record = CanaryDecision(
        decision=decision,
        reason=reason,
        snapshot=snapshot.name,
        production=production,
        canary=canary,
        difference=diff,
        lower=lower if math.isfinite(lower) else None,
        upper=upper if math.isfinite(upper) else None,
        policy=policy,
    )
    CANARY_DECISIONS.labels(decision=decision).inc()
    for bound, value in (("estimate", diff), ("lower", lower), ("upper", upper)):
        if math.isfinite(value):
            CANARY_NDCG_DIFF.labels(bound=bound).set(value)
    if apply and decision == "promote":
        registry.promote(actor="canary-controller")
    elif apply and decision == "rollback":
        registry.clear_canary(actor="canary-controller")
    if decision != "wait":
        with (registry.root / CANARY_DECISIONS_LOG).open("a", encoding="utf-8") as log:
            log.write(record.model_dump_json() + "\n")
    logger.info("canary %s: %s", decision, reason)
    return record


def decisions(registry: ModelRegistry) -> list[CanaryDecision]:
    """Every recorded decision, oldest first."""
    path = registry.root / CANARY_DECISIONS_LOG
    if not path.is_file():
        return []
    return [
        CanaryDecision.model_validate(json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
