"""Always-valid sequential tests: valid under repeated looks, and they do decide real effects."""

from __future__ import annotations

import math
import random

import pytest

from services.evaluation.sequential import beta_prior, msprt_bernoulli, msprt_normal

ALPHA = 0.05


def _streams(share: float, streams: int, n: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[1 if rng.random() < share else 0 for _ in range(n)] for _ in range(streams)]


def _first_rejection_bernoulli(outcomes: list[int], every: int) -> str | None:
    wins = 0
    for i, won in enumerate(outcomes, 1):
        wins += won
        if i % every == 0:
            verdict = msprt_bernoulli(wins, i - wins, prior_sd=0.05, alpha=ALPHA).verdict
            if verdict != "undecided":
                return verdict
    return None


def _first_rejection_naive(outcomes: list[int], every: int) -> bool:
    wins = 0
    for i, won in enumerate(outcomes, 1):
        wins += won
        if i % every == 0 and i >= 20:
            share = wins / i
            z = (share - 0.5) / math.sqrt(0.25 / i)
            if abs(z) > 1.96:
                return True
    return False


def test_repeated_looks_keep_the_false_positive_rate_under_alpha() -> None:
    # No effect, 300 streams of 1,000 decided lists, a look every 10 lists (100 looks).
    streams = _streams(0.5, 300, 1000, seed=1)
    sequential = sum(_first_rejection_bernoulli(s, 10) is not None for s in streams) / 300
    naive = sum(_first_rejection_naive(s, 10) for s in streams) / 300
    assert sequential <= ALPHA + 0.02
    # The fixed-sample z-test re-run at every look is what the controller used to do: it
    # "finds" an effect in a far larger share of streams that have none.
    assert naive > 2 * ALPHA


def test_a_real_effect_is_decided_in_its_direction() -> None:
    better = _streams(0.6, 100, 2000, seed=2)
    worse = _streams(0.4, 100, 2000, seed=3)
    assert sum(_first_rejection_bernoulli(s, 10) == "better" for s in better) >= 95
    assert sum(_first_rejection_bernoulli(s, 10) == "worse" for s in worse) >= 95


def test_confidence_sequence_is_consistent_with_the_verdict() -> None:
    for wins, losses in [(5, 5), (60, 40), (600, 400), (0, 30), (30, 0)]:
        result = msprt_bernoulli(wins, losses, alpha=ALPHA)
        assert result.lower <= result.estimate <= result.upper
        assert (result.verdict != "undecided") == (result.lower > 0 or result.upper < 0)
        assert result.p_value == pytest.approx(min(1.0, 1 / result.ratio))
    narrow = msprt_bernoulli(600, 400)
    wide = msprt_bernoulli(60, 40)
    assert narrow.upper - narrow.lower < wide.upper - wide.lower
    assert msprt_bernoulli(0, 0).verdict == "undecided"


def test_normal_mixture_on_a_difference_of_means() -> None:
    rng = random.Random(4)
    false_alarms = 0
    for _ in range(200):
        a, b = [], []
        for i in range(1, 801):
            a.append(rng.gauss(0.40, 0.3))
            b.append(rng.gauss(0.40, 0.3))
            if i % 20 == 0:
                mean_a, mean_b = sum(a) / i, sum(b) / i
                var = sum((x - mean_a) ** 2 for x in a) / (i - 1) / i
                var += sum((x - mean_b) ** 2 for x in b) / (i - 1) / i
                if msprt_normal(mean_b - mean_a, var, i, tau=0.02).verdict != "undecided":
                    false_alarms += 1
                    break
    assert false_alarms / 200 <= ALPHA + 0.02
    decided = msprt_normal(0.05, (0.3**2) * 2 / 2000, 2000, tau=0.02)
    assert decided.verdict == "better" and decided.lower > 0
    assert msprt_normal(-0.05, (0.3**2) * 2 / 2000, 2000, tau=0.02).verdict == "worse"
    assert msprt_normal(0.01, 0.0, 1, tau=0.02).verdict == "undecided"


def test_prior_and_arguments() -> None:
    a = beta_prior(0.05)
    assert 0.25 / (2 * a + 1) == pytest.approx(0.05**2)
    with pytest.raises(ValueError):
        beta_prior(0.6)
    with pytest.raises(ValueError):
        msprt_normal(0.1, 0.01, 10, tau=0.0)
