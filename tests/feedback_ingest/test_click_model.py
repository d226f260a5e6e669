"""Position-bias EM recovers the examination curve that generated the clicks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from feedback_ingest.store import DerivedSettings, StoreSettings, refresh_derived
from feedback_ingest.store.click_model import estimate_propensities, fallback_curve
from services.ingest_settings import ClickModelSettings
from tests.feedback_ingest.builders import act, at, open_store, query

ETA = 0.8
TRUE = 1 / np.arange(1, 11) ** ETA  # relative propensities (position 1 = 1)


def _pbm_log(
    n_queries: int, n_products: int, sessions: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Aggregated PBM clicks: each session shows a query's products in a random order
    (as interleaved rankers do), a product at k is clicked with P = 0.9 * TRUE[k] * gamma."""
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.05, 0.9, size=(n_queries, n_products))
    shown: Counter[tuple[int, int]] = Counter()
    clicked: Counter[tuple[int, int]] = Counter()
    for q in range(n_queries):
        for _ in range(sessions):
            order = rng.permutation(n_products)
            clicks = rng.random(n_products) < 0.9 * TRUE[:n_products] * gamma[q, order]
            for k, (d, c) in enumerate(zip(order, clicks, strict=True), start=1):
                shown[(q * n_products + d, k)] += 1
                clicked[(q * n_products + d, k)] += int(c)
    keys = sorted(shown)
    return (
        np.array([p for p, _ in keys]),
        np.array([k for _, k in keys]),
        np.array([shown[key] for key in keys]),
        np.array([clicked[key] for key in keys]),
    )


def test_em_recovers_known_propensities() -> None:
    pairs, positions, shown, engaged = _pbm_log(200, 10, 30, seed=0)
    settings = ClickModelSettings(max_position=10, min_observations=1000)
    estimate = estimate_propensities(pairs, positions, shown, engaged, settings)
    assert estimate.methods == ["em"] * 10
    assert estimate.propensities == pytest.approx(TRUE, abs=0.05)
    assert estimate.observations.tolist() == [200 * 30] * 10


def test_scarce_data_uses_the_fallback_curve() -> None:
    pairs, positions, shown, engaged = _pbm_log(3, 10, 2, seed=1)  # 60 exposures
    settings = ClickModelSettings(max_position=10, min_observations=1000, fallback_eta=1.0)
    estimate = estimate_propensities(pairs, positions, shown, engaged, settings)
    assert estimate.methods == ["fallback"] * 10
    assert estimate.propensities == pytest.approx(
        [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6, 1 / 7, 1 / 8, 1 / 9, 1 / 10]
    )
    assert estimate.iterations == 0


def test_unseen_positions_fall_back_one_by_one() -> None:
    pairs, positions, shown, engaged = _pbm_log(200, 6, 30, seed=2)  # positions 1..6 only
    settings = ClickModelSettings(max_position=8, min_observations=1000, fallback_eta=2.0)
    estimate = estimate_propensities(pairs, positions, shown, engaged, settings)
    assert estimate.methods == ["em"] * 6 + ["fallback"] * 2
    assert estimate.propensities[:6] == pytest.approx(TRUE[:6], abs=0.06)
    assert estimate.propensities[6:] == pytest.approx(fallback_curve(8, 2.0)[6:])


def test_refresh_fits_em_from_served_lists(tmp_path: Path) -> None:
    settings = StoreSettings(
        derived=DerivedSettings(
            click_model=ClickModelSettings(max_position=8, min_observations=5000)
        )
    )
    rng = np.random.default_rng(3)
    gamma = rng.uniform(0.1, 0.9, size=(40, 8))
    queries, clicks = [], []
    for i in range(2400):
        q = i % 40
        order = rng.permutation(8)
        products = [f"q{q}-p{d}" for d in order]
        queries.append(query(f"l{i}", f"query {q}", products))
        hit = rng.random(8) < TRUE[:8] * gamma[q, order]
        clicks += [act(f"l{i}", "click", products[k], int(k) + 1) for k in np.flatnonzero(hit)]
    for store in open_store(tmp_path / "events.duckdb", settings):
        store.write_batch(queries, clicks)
        report = refresh_derived(store, now=at(60))
        got = store.con.execute("SELECT propensity, method FROM propensities ORDER BY position")
        rows = got.fetchall()
    assert report.propensity_method == "em"
    assert [m for _, m in rows] == ["em"] * 8
    assert [p for p, _ in rows] == pytest.approx(TRUE[:8], abs=0.08)
