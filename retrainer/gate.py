"""The gate: may a candidate go on to the canary? (nDCG: Järvelin & Kekäläinen, 2002.)

Three checks, each recorded with its figures (:class:`services.decisions.GateCheck`):

* ``heldout``: click-judged held-out queries (hash-held-out, never trained on), pooled from
  every list served under them, scored on condensed lists (judged products only, Sakai 2007)
  so that products production never showed do not count against the candidate. By default a
  do-no-harm rule, non-inferiority: the one-sided lower bound of the paired candidate -
  production difference must exceed ``-margin``.
  Demanding a significant gain here (``heldout_rule = superiority``, the old rule) rejects
  better candidates: click judgments know only what production showed, so they favour the
  incumbent (benchmarks/decisions.py measures how often).
* ``guard``: a labelled guard set (human grades) or, without one, the catalog guard (queries
  generated from the catalog's own titles): the candidate may not lose more than
  ``max_guard_drop``. This is what stops a candidate trained on poisoned clicks.
* ``reference``: the same guard evidence against a fixed reference version (the first
  production by default), so losses below each round's margin cannot add up round after round.

Both models retrieve from their own index (the consistency rule), on the same queries: the
held-out check in the serving mode (what shoppers would get), the guard and reference checks
in ``retrain.guard_mode`` (SPLADE alone by default: whether the model itself forgot).
"""

from __future__ import annotations

import math

from scipy import stats

from services.decisions import GateCheck, GateDecision
from services.evaluation.report import EvalReport
from services.pvalues import p_text
from services.settings import GatePolicy

PRODUCTION = "production"
CANDIDATE = "candidate"
REFERENCE = "reference"
PRIMARY = "ndcg@10"


def paired_lower_bound(
    report: EvalReport, control: str, treatment: str, confidence: float
) -> float:
    """One-sided lower confidence bound of mean(treatment - control) per query (Student t)."""
    a, b = report.per_query[control], report.per_query[treatment]
    diffs = [b[q] - a[q] for q in a]
    n = len(diffs)
    if n < 2:
        return -math.inf
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    if var == 0:
        return mean
    return mean - float(stats.t.ppf(confidence, n - 1)) * math.sqrt(var / n)


def _figures(report: EvalReport, control: str, treatment: str) -> tuple[float, float, float]:
    base, cand = report.mean(control, PRIMARY), report.mean(treatment, PRIMARY)
    return base, cand, cand - base


def heldout_check(
    report: EvalReport | None,
    policy: GatePolicy,
    *,
    production: str,
    candidate: str,
    evidence: str = "click-judged held-out queries",
) -> GateCheck:
    """The held-out rule on a report with systems ``production`` and ``candidate``."""
    if report is None or report.num_queries < policy.min_heldout_queries:
        n = report.num_queries if report else 0
        return GateCheck(
            name="heldout",
            evidence=evidence,
            rule=f"at least {policy.min_heldout_queries} held-out queries",
            control=production,
            candidate=candidate,
            queries=n,
            control_value=report.mean(PRODUCTION, PRIMARY) if report else 0.0,
            candidate_value=report.mean(CANDIDATE, PRIMARY) if report else 0.0,
            difference=0.0,
            passed=False,
            reason=f"only {n} held-out queries (< {policy.min_heldout_queries})",
        )
    base, cand, diff = _figures(report, PRODUCTION, CANDIDATE)
    p_value = report.p_values.get(CANDIDATE, {}).get(PRIMARY, 1.0)
    lower = paired_lower_bound(report, PRODUCTION, CANDIDATE, policy.confidence)
    if policy.heldout_rule == "superiority":
        rule = f"gain >= {policy.min_gain:+.3f} at p <= {policy.max_p_value}"
        passed = diff >= policy.min_gain and p_value <= policy.max_p_value
        reason = f"nDCG@10 gain {diff:+.4f} ({p_text(p_value)})"
    elif policy.heldout_rule == "not_worse":
        upper = 2 * diff - lower  # the bound is symmetric about the mean difference
        rule = f"not shown worse: {policy.confidence:.0%} upper bound >= 0"
        passed = upper >= 0
        reason = f"nDCG@10 difference {diff:+.4f}, upper bound {upper:+.4f}"
    else:
        rule = f"non-inferiority: {policy.confidence:.0%} lower bound > -{policy.margin}"
        passed = lower > -policy.margin
        reason = f"nDCG@10 difference {diff:+.4f}, lower bound {lower:+.4f}"
    return GateCheck(
        name="heldout",
        evidence=evidence,
        rule=rule,
        control=production,
        candidate=candidate,
        queries=report.num_queries,
        control_value=base,
        candidate_value=cand,
        difference=diff,
        lower=lower,
        p_value=p_value,
        passed=passed,
        reason=("" if passed else "fails: ") + reason,
    )


def drop_check(
    report: EvalReport,
    policy: GatePolicy,
    *,
    name: str,
    evidence: str,
    control_system: str,
    control: str,
    candidate: str,
) -> GateCheck:
    """Candidate against ``control_system`` on a guard set: a drop of at most the allowance."""
    allowed = policy.max_reference_drop if name == "reference" else policy.max_guard_drop
    base, cand, diff = _figures(report, control_system, CANDIDATE)
    p_value = (
        report.p_values.get(CANDIDATE, {}).get(PRIMARY)
        if report.baseline == control_system
        else None
    )
    passed = -diff <= allowed
    return GateCheck(
        name=name,
        evidence=evidence,
        rule=f"nDCG@10 drop <= {allowed}",
        control=control,
        candidate=candidate,
        queries=report.num_queries,
        control_value=base,
        candidate_value=cand,
        difference=diff,
        lower=paired_lower_bound(report, control_system, CANDIDATE, policy.confidence),
        p_value=p_value,
        passed=passed,
        reason=("" if passed else "fails: ") + f"nDCG@10 {base:.4f} -> {cand:.4f} ({diff:+.4f})",
    )


def guard_checks(
    report: EvalReport,
    policy: GatePolicy,
    *,
    evidence: str,
    production: str,
    candidate: str,
    reference: str | None,
) -> list[GateCheck]:
    """The guard check (candidate against production on the guard set) and, when the report
    holds a fixed reference, the reference check on the same queries."""
    checks = [
        drop_check(
            report,
            policy,
            name="guard",
            evidence=evidence,
            control_system=PRODUCTION,
            control=production,
            candidate=candidate,
        )
    ]
    if reference is not None:
        checks.append(
            drop_check(
                report,
                policy,
                name="reference",
                evidence=f"{report.dataset}, against the fixed reference",
                control_system=REFERENCE,
                control=reference,
                candidate=candidate,
            )
        )
    return checks


def decide(
    checks: list[GateCheck],
    policy: GatePolicy,
    *,
    production: str,
    candidate: str,
    reference: str | None = None,
    heldout: EvalReport | None = None,
) -> GateDecision:
    """The verdict: every check must pass; each failed one is a reason."""
    failed = [f"{c.name}: {c.reason}" for c in checks if not c.passed]
    if not checks:
        failed = ["no check could be made"]
    return GateDecision(
        passed=not failed,
        reasons=failed or ["all checks passed"],
        production=production,
        candidate=candidate,
        reference=reference,
        checks=checks,
        heldout_metrics=(
            {role: heldout.means[role] for role in (PRODUCTION, CANDIDATE)} if heldout else {}
        ),
        policy=policy,
    )
