"""Always-valid sequential tests for a canary that is judged while it runs.

A canary is looked at again and again as lists arrive. Re-running a fixed-sample z-test at
every look inflates its false-positive rate far beyond alpha (Armitage et al., 1969; Johari et
al., 2017 measured it on real A/B platforms). A mixture sequential probability ratio test
(mSPRT; Robbins, 1970) stays valid under continuous monitoring: its likelihood ratio, averaged
over a prior on the effect, is a non-negative martingale under the null, so by Ville's
inequality P(it ever exceeds 1/alpha) <= alpha however often it is checked (Johari, Koomen,
Pekelis & Walsh, 2017, "Peeking at A/B tests: why it matters, and what to do about it", KDD;
2022, Operations Research). ``1 / max(ratio so far)`` is the always-valid p-value; these
functions are stateless and return ``1 / ratio`` at the current look, which is what the
controller needs: it stops at the first look where that falls to alpha (a later, larger
p reported while still waiting is the current look's, not the running minimum).

Two tests are offered:

* :func:`msprt_normal`: a difference of means with a normal mixture N(theta0, tau^2) over the
  effect and the estimate's plug-in variance (online nDCG@10 per arm, A against B).
* :func:`msprt_bernoulli`: the canary's share of decided team-draft interleaved lists against
  1/2 with a Beta(a, a) mixture, exact for Bernoulli outcomes (Chapelle et al., 2012 judge
  interleaving by that share).

Both return a :class:`SequentialResult` with the estimate, the mixture ratio, the always-valid
p-value, the confidence sequence at level alpha (the effects the test cannot yet reject) and
the verdict: ``better``, ``worse`` or ``undecided``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["better", "worse", "undecided"]


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """One look of a sequential test."""

    estimate: float
    """The effect: canary minus control (a difference of means, or share - 1/2)."""
    ratio: float
    """Mixture likelihood ratio against 'no effect'; the test rejects at >= 1 / alpha."""
    p_value: float
    """Always-valid p-value at this look: min(1, 1 / ratio)."""
    lower: float
    upper: float
    """Confidence sequence at level alpha: effects not rejected at this look."""
    n: int
    verdict: Verdict


def _verdict(estimate: float, ratio: float, alpha: float) -> Verdict:
    if ratio < 1 / alpha:
        return "undecided"
    return "better" if estimate > 0 else "worse"


def _log_ratio_normal(estimate: float, variance: float, tau2: float, theta0: float) -> float:
    shrink = variance / (variance + tau2)
    return 0.5 * math.log(shrink) + tau2 * (estimate - theta0) ** 2 / (
        2 * variance * (variance + tau2)
    )


def msprt_normal(
    estimate: float, variance: float, n: int, *, tau: float, alpha: float = 0.05
) -> SequentialResult:
    """mSPRT for an effect whose estimate is approximately N(effect, ``variance``).

    ``variance`` is the estimate's (e.g. s_a^2 / n_a + s_b^2 / n_b for a difference of two
    means), ``n`` the number of observations behind it (reported only), ``tau`` the standard
    deviation of the normal mixture over effects: the effect size the test is most sensitive
    to. The ratio for 'effect = theta0' is sqrt(V / (V + tau^2)) exp(tau^2 (est - theta0)^2 /
    (2 V (V + tau^2))), V the variance, and the confidence sequence is the set of theta0 whose
    ratio stays below 1 / alpha.
    """
    if tau <= 0 or not 0 < alpha < 1:
        raise ValueError(f"need tau > 0 and 0 < alpha < 1 (got tau={tau}, alpha={alpha})")
    if variance <= 0 or n < 2:
        return SequentialResult(estimate, 1.0, 1.0, -math.inf, math.inf, n, "undecided")
    tau2 = tau * tau
    log_ratio = _log_ratio_normal(estimate, variance, tau2, 0.0)
    ratio = math.exp(min(log_ratio, 700.0))
    half = math.sqrt(
        2
        * variance
        * (variance + tau2)
        / tau2
        * (math.log(1 / alpha) + 0.5 * math.log((variance + tau2) / variance))
    )
    return SequentialResult(
        estimate=estimate,
        ratio=ratio,
        p_value=min(1.0, 1 / ratio),
        lower=estimate - half,
        upper=estimate + half,
        n=n,
        verdict=_verdict(estimate, ratio, alpha),
    )


def beta_prior(prior_sd: float) -> float:
    """The ``a`` of a Beta(a, a) prior on a share whose standard deviation is ``prior_sd``."""
    if not 0 < prior_sd < 0.5:
        raise ValueError(f"prior_sd must lie in (0, 0.5), got {prior_sd}")
    return max((0.25 / prior_sd**2 - 1) / 2, 1e-3)


def _log_ratio_bernoulli(wins: int, losses: int, a: float, p0: float) -> float:
    """log of [B(a + w, a + l) / B(a, a)] / [p0^w (1 - p0)^l]."""
    log_mixture = (
        math.lgamma(a + wins)
        + math.lgamma(a + losses)
        - math.lgamma(2 * a + wins + losses)
        - (2 * math.lgamma(a) - math.lgamma(2 * a))
    )
    return log_mixture - wins * math.log(p0) - losses * math.log1p(-p0)


def _bound(wins: int, losses: int, a: float, threshold: float, lo: float, hi: float) -> float:
    """The share in [lo, hi] where the log ratio crosses ``threshold`` (bisection; the ratio
    is convex in p0 and below the threshold at the estimate's side of the bracket)."""
    f_lo = _log_ratio_bernoulli(wins, losses, a, lo) - threshold
    if f_lo < 0:  # not even the extreme share is rejected
        return lo
    for _ in range(60):
        mid = (lo + hi) / 2
        f_mid = _log_ratio_bernoulli(wins, losses, a, mid) - threshold
        if (f_mid < 0) == (f_lo < 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
    return (lo + hi) / 2


def msprt_bernoulli(
    wins: int, losses: int, *, prior_sd: float = 0.05, alpha: float = 0.05
) -> SequentialResult:
    """Mixture SPRT of the share of decided comparisons the canary won, against 1/2.

    The mixture is Beta(a, a) over the share (:func:`beta_prior` turns ``prior_sd`` into a),
    which gives the ratio in closed form; the estimate and bounds are reported as share - 1/2.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    n = wins + losses
    if n == 0:
        return SequentialResult(0.0, 1.0, 1.0, -0.5, 0.5, 0, "undecided")
    a = beta_prior(prior_sd)
    share = wins / n
    log_ratio = _log_ratio_bernoulli(wins, losses, a, 0.5)
    ratio = math.exp(min(log_ratio, 700.0))
    threshold = math.log(1 / alpha)
    eps = 1e-12
    centre = min(max(share, eps), 1 - eps)
    inside = _log_ratio_bernoulli(wins, losses, a, centre) < threshold
    lower = _bound(wins, losses, a, threshold, eps, centre) if inside else centre
    upper = _bound(wins, losses, a, threshold, 1 - eps, centre) if inside else centre
    lower, upper = (0.0 if lower <= eps else lower), (1.0 if upper >= 1 - eps else upper)
    return SequentialResult(
        estimate=share - 0.5,
        ratio=ratio,
        p_value=min(1.0, 1 / ratio),
        lower=lower - 0.5,
        upper=upper - 0.5,
        n=n,
        verdict=_verdict(share - 0.5, ratio, alpha),
    )
