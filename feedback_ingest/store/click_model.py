"""Position bias: examination propensities per rank from a position-based click model.

The position-based model (PBM; Craswell et al. 2008, "An experimental comparison of click
position-bias models"; Chuklin, Markov & de Rijke 2015, "Click Models for Web Search") says a
product shown at position k is clicked with probability theta_k * gamma_qd: examined with a
probability that depends only on k, and attractive with a probability that depends only on the
(query, product) pair. Both are fitted by expectation-maximisation as in Wang et al. 2018,
"Position Bias Estimation for Unbiased Learning to Rank in Personal Search" (WSDM), Sec. 4:
the E-step splits each non-click into "not examined" and "examined but not relevant"; the
M-step re-estimates theta_k and gamma_qd as averages of those posteriors. Their *regression*
EM replaces the per-pair gamma M-step by a feature-based regression; the event store has no
relevance features, so gamma stays per pair (the paper's standard EM) and sparse data falls
back to the fixed curve 1 / k**eta instead.

Only ratios theta_k / theta_1 are identified (and only when the same pair is seen at several
positions, e.g. across model versions and arms), which is all inverse-propensity weighting
needs (Joachims et al. 2017): propensities are reported relative to position 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from services.ingest_settings import ClickModelSettings

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Method = Literal["em", "fallback"]
_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class PropensityEstimate:
    """Propensity per position 1..max_position (index 0 is position 1), relative to position 1."""

    propensities: FloatArray
    methods: list[Method]
    observations: IntArray
    iterations: int


def fallback_curve(max_position: int, eta: float) -> FloatArray:
    """The fixed curve 1 / k**eta for k = 1..max_position (Joachims et al. 2017 use eta=1)."""
    return 1.0 / np.arange(1, max_position + 1, dtype=np.float64) ** eta


def fit_pbm(
    pair_ids: IntArray,
    positions: IntArray,
    shown: IntArray,
    engaged: IntArray,
    n_positions: int,
    *,
    max_iter: int = 500,
    tol: float = 1e-6,
    init: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, int]:
    """EM for the PBM over aggregated rows (pair, position, times shown, times engaged).

    Returns (theta per position, gamma per pair, iterations). ``positions`` are 1-based and
    must be <= ``n_positions``; ``pair_ids`` are dense 0..P-1.
    """
    k = positions.astype(np.int64) - 1
    n = shown.astype(np.float64)
    c = engaged.astype(np.float64)
    skipped = n - c
    n_pairs = int(pair_ids.max()) + 1 if pair_ids.size else 0
    shown_at = np.bincount(k, weights=n, minlength=n_positions)
    shown_pair = np.bincount(pair_ids, weights=n, minlength=n_pairs)
    theta = np.full(n_positions, 0.5) if init is None else init.astype(np.float64).copy()
    gamma = np.full(n_pairs, 0.5)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - reported after the loop
        t = np.clip(theta[k], _EPS, 1 - _EPS)
        g = np.clip(gamma[pair_ids], _EPS, 1 - _EPS)
        no_click = 1.0 - t * g
        examined = c + skipped * t * (1.0 - g) / no_click  # E[E=1 | obs]
        relevant = c + skipped * (1.0 - t) * g / no_click  # E[R=1 | obs]
        new_theta = np.divide(
            np.bincount(k, weights=examined, minlength=n_positions),
            shown_at,
            out=theta.copy(),
            where=shown_at > 0,
        )
        gamma = np.divide(
            np.bincount(pair_ids, weights=relevant, minlength=n_pairs),
            shown_pair,
            out=gamma,
            where=shown_pair > 0,
        )
        delta = float(np.max(np.abs(new_theta - theta))) if n_positions else 0.0
        theta = new_theta
        if delta < tol:
            break
    return theta, gamma, iterations


def estimate_propensities(
    pair_ids: IntArray,
    positions: IntArray,
    shown: IntArray,
    engaged: IntArray,
    settings: ClickModelSettings,
) -> PropensityEstimate:
    """Propensities for positions 1..max_position: EM where data suffices, else the fallback.

    The whole curve falls back when fewer than ``min_observations`` exposures (or none at
    position 1, the reference) are available; a single position falls back when it has fewer
    than ``min_position_observations``.
    """
    size = settings.max_position
    fallback = fallback_curve(size, settings.fallback_eta)
    keep = positions <= size
    per_position = np.bincount(positions[keep] - 1, weights=shown[keep], minlength=size)
    counts = per_position.astype(np.int64)
    total = int(counts.sum())
    if total < settings.min_observations or counts[0] < settings.min_position_observations:
        logger.info(
            "position bias: %d exposures (< %d needed), using 1/k^%.2f",
            total,
            settings.min_observations,
            settings.fallback_eta,
        )
        return PropensityEstimate(fallback, ["fallback"] * size, counts, 0)
    theta, _, iterations = fit_pbm(
        pair_ids[keep],
        positions[keep],
        shown[keep],
        engaged[keep],
        size,
        max_iter=settings.max_iter,
        tol=settings.tol,
        init=fallback * 0.5,
    )
    relative = np.clip(theta / max(theta[0], _EPS), _EPS, 1.0)
    enough = counts >= settings.min_position_observations
    propensities = np.where(enough, relative, fallback)
    methods: list[Method] = ["em" if ok else "fallback" for ok in enough]
    logger.info("position bias: EM over %d exposures in %d iterations", total, iterations)
    return PropensityEstimate(propensities, methods, counts, iterations)
