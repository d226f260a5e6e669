"""Judgments, IPS weights, training pairs and online metrics on a scripted session log.

Every expected number below is worked out by hand from the log in ``_session_log``.
Propensities are the fallback curve 1/k (too few exposures for EM), clipped at 3.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedback_ingest.store import (
    DerivedSettings,
    EventStore,
    StoreSettings,
    refresh_derived,
)
from services.ingest_settings import ClickModelSettings
from tests.feedback_ingest.builders import act, at, open_store, query

SETTINGS = StoreSettings(
    derived=DerivedSettings(
        click_model=ClickModelSettings(max_position=10, min_observations=1000, fallback_eta=1.0),
        ips_max_weight=3.0,
        max_pairs_per_query=3,
        attribution_window_s=30 * 60,
    )
)


def _session_log(store: EventStore) -> None:
    queries = [
        # "red shoes", production: clicks p1 @1, carts p3 @3 -> lowest engaged position 3.
        query("qA", "Red Shoes", ["p1", "p2", "p3", "p4", "p5"], minute=0),
        # same normalised query on the canary: clicks p4 @2, buys p6 @4 -> lowest 4.
        query(
            "qB", "  red  SHOES ", ["p2", "p4", "p1", "p6"], minute=5, version="v2", arm="canary"
        ),
        # "blue hat": no interaction at all.
        query("qC", "blue hat", ["h1", "h2", "h3"], minute=10),
        # served at minute 50: its 30-minute window is still open at minute 60.
        query("qD", "Blue Hat", ["h2", "h1"], minute=50, version="v2", arm="canary"),
        # "green bag": the client reports g8 (seen) and g9 (clicked) below the served list, which
        # it was never served, so they bind nowhere; the click on g2 comes at minute 40, after
        # qE's attribution window closed (minute 30).
        query("qE", "green bag", ["g1", "g2", "g3"], minute=0),
    ]
    actions = [
        *[act("qA", "impression", p, k) for k, p in enumerate(["p1", "p2", "p3", "p4", "p5"], 1)],
        act("qA", "click", "p1", 1),
        act("qA", "click", "p3", 3),
        act("qA", "add_to_cart", "p3", 3),
        act("qB", "click", "p4", 2, minute=6),
        act("qB", "click", "p6", 4, minute=6),
        act("qB", "purchase", "p6", 4, minute=7),
        act("qD", "click", "h1", 2, minute=51),
        act("qE", "impression", "g8", 4),
        act("qE", "click", "g9", 5, minute=2),
        act("qE", "click", "g2", 2, minute=40),
        act("qX", "click", "p1", 1),  # its query event never arrived: ignored
    ]
    store.write_batch(queries, actions)


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[EventStore]:
    for store in open_store(tmp_path / "events.duckdb", SETTINGS):
        _session_log(store)
        refresh_derived(store, now=at(60))
        yield store


def _rows(store: EventStore, sql: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in store.con.execute(sql).fetchall()]


def test_grades_follow_the_lowest_engagement(logged: EventStore) -> None:
    got = _rows(logged, "SELECT query_id, product_id, grade, position FROM judgments ORDER BY ALL")
    assert got == [
        # qA: p1 click (1), p3 cart (2); p2 skipped above position 3 -> 0; p4, p5 unknown.
        ("qA", "p1", 1, 1),
        ("qA", "p2", 0, 2),
        ("qA", "p3", 2, 3),
        # qB: lowest engagement p6 @4; p2 @1 and p1 @3 skipped -> 0; p4 click; p6 purchase.
        ("qB", "p1", 0, 3),
        ("qB", "p2", 0, 1),
        ("qB", "p4", 1, 2),
        ("qB", "p6", 3, 4),
        # qC: no engagement -> no judgments. qD: h2 skipped above h1's click.
        ("qD", "h1", 1, 2),
        ("qD", "h2", 0, 1),
        # qE: g8 and g9 were never served, so the lowest bound engagement is g2 @2 (its late
        # click still labels); g1 skipped above it -> 0; g3 below it: unknown.
        ("qE", "g1", 0, 1),
        ("qE", "g2", 1, 2),
    ]


def test_propensities_fall_back_to_one_over_k(logged: EventStore) -> None:
    # 5 + 4 + 3 + 2 + 5 = 19 exposures < min_observations=1000 -> 1/k for k = 1..10.
    got = _rows(logged, "SELECT position, propensity, method FROM propensities ORDER BY 1")
    assert [(p, m) for p, _, m in got] == [(k, "fallback") for k in range(1, 11)]
    assert [v for _, v, _ in got] == pytest.approx([1 / k for k in range(1, 11)])


def test_query_product_stats_and_ips_weights(logged: EventStore) -> None:
    got = _rows(logged, "SELECT * FROM query_product_stats ORDER BY norm_query, product_id")
    # ips_weight = sum over engaged lists of min(1 / (1/k), 3) = min(k, 3).
    assert got == [
        # norm_query, product, impressions, clicks, carts, purchases, max_grade, ips
        ("blue hat", "h1", 2, 1, 0, 0, 1, 2.0),  # qD click @2 -> 2
        ("blue hat", "h2", 2, 0, 0, 0, 0, 0.0),
        ("blue hat", "h3", 1, 0, 0, 0, None, 0.0),  # never judged (qC had no engagement)
        ("green bag", "g1", 1, 0, 0, 0, 0, 0.0),
        ("green bag", "g2", 1, 1, 0, 0, 1, 2.0),  # @2 -> 2 (late clicks still label)
        ("green bag", "g3", 1, 0, 0, 0, None, 0.0),  # below the lowest engagement: unknown
        # g8 and g9 were never served: no stats, whatever the client reported.
        ("red shoes", "p1", 2, 1, 0, 0, 1, 1.0),  # qA @1 -> 1; qB skip adds nothing
        ("red shoes", "p2", 2, 0, 0, 0, 0, 0.0),
        ("red shoes", "p3", 1, 1, 1, 0, 2, 3.0),  # qA @3 -> 3
        ("red shoes", "p4", 2, 1, 0, 0, 1, 2.0),  # qB @2 -> 2 (qA @4: below, unknown)
        ("red shoes", "p5", 1, 0, 0, 0, None, 0.0),
        ("red shoes", "p6", 1, 1, 0, 1, 3, 3.0),  # qB @4 -> 4, clipped to 3
    ]


def test_training_pairs_weighted_and_capped(logged: EventStore) -> None:
    got = _rows(
        logged, "SELECT * FROM training_pairs ORDER BY norm_query, weight DESC, negative_id"
    )
    # weight = ips_weight(positive) * grade(positive); at most 3 pairs per query.
    assert got == [
        ("blue hat", "h1", "h2", 1, 2.0),  # 2.0 * 1
        # positive g2 (2.0 * 1), negative g1; the unserved g9 is no positive.
        ("green bag", "g2", "g1", 1, 2.0),
        # negative p2 (skipped in qA and qB); p1 was skipped in qB but clicked in qA: positive.
        ("red shoes", "p6", "p2", 3, 9.0),  # 3.0 * 3
        ("red shoes", "p3", "p2", 2, 6.0),  # 3.0 * 2
        ("red shoes", "p4", "p2", 1, 2.0),  # 2.0 * 1; p1 -> p2 (1.0 * 1) is the 4th: capped
    ]


INV_LOG2_3 = 1 / math.log2(3)  # discount at position 2: 0.6309297535714575
# qA gains by position [1, 0, 2, 0, 0]: DCG = 1/log2(2) + 2/log2(4) = 1 + 1 = 2;
# ideal [2, 1, 0, 0, 0]: IDCG = 2/log2(2) + 1/log2(3) = 2.6309297535714575 -> 0.7601875334318685
NDCG_QA = 2 / (2 + INV_LOG2_3)
# qB gains [0, 1, 0, 3]: DCG = 1/log2(3) + 3/log2(5) = 0.63093 + 1.29203 = 1.9229594277916369;
# ideal [3, 1, 0, 0]: IDCG = 3 + 1/log2(3) = 3.6309297535714578 -> 0.5296052411645183
NDCG_QB = (INV_LOG2_3 + 3 / math.log2(5)) / (3 + INV_LOG2_3)


def test_online_ndcg_per_closed_list(logged: EventStore) -> None:
    got = _rows(
        logged,
        "SELECT query_id, n_results, ndcg_at_10, clicked, added_to_cart, purchased "
        "FROM online_metrics ORDER BY query_id",
    )
    assert pytest.approx(0.7601875334318685) == NDCG_QA
    assert pytest.approx(0.5296052411645183) == NDCG_QB
    assert got == [
        ("qA", 5, pytest.approx(NDCG_QA), True, True, False),
        ("qB", 4, pytest.approx(NDCG_QB), True, True, True),  # a purchase counts as a cart
        ("qC", 3, 0.0, False, False, False),
        # qD (minute 50) is still open at minute 60. qE: the only in-window action is g9,
        # which is not in the served list; g2's click came after the window -> 0, not clicked.
        ("qE", 3, 0.0, False, False, False),
    ]


def test_online_metrics_by_arm(logged: EventStore) -> None:
    got = _rows(
        logged,
        "SELECT model_version, arm, lists, mean_ndcg_at_10, ctr_at_10, add_to_cart_rate, "
        "purchase_rate FROM online_metrics_by_arm ORDER BY 1",
    )
    assert got == [
        # qA, qC, qE: mean nDCG (0.76019 + 0 + 0) / 3 = 0.2533958444772895; 1 of 3 clicked.
        (
            "v1",
            "production",
            3,
            pytest.approx(NDCG_QA / 3),
            pytest.approx(1 / 3),
            pytest.approx(1 / 3),
            0.0,
        ),
        ("v2", "canary", 1, pytest.approx(NDCG_QB), 1.0, 1.0, 1.0),
    ]


def test_windows_close_as_time_passes(logged: EventStore) -> None:
    refresh_derived(logged, now=at(120))
    row = logged.con.execute(
        "SELECT ndcg_at_10, clicked FROM online_metrics WHERE query_id = 'qD'"
    ).fetchone()
    # qD gains [0, 1]: DCG = 1/log2(3); IDCG = 1/log2(2) = 1.
    assert row == (pytest.approx(INV_LOG2_3), True)
    refresh_derived(logged, now=at(1))
    assert _rows(logged, "SELECT count(*) FROM online_metrics") == [(0,)]


Z = 1.959963984540054


def test_online_metrics_by_arm_intervals(logged: EventStore) -> None:
    got = _rows(
        logged,
        "SELECT model_version, ndcg_at_10_stderr, ndcg_at_10_lower, ndcg_at_10_upper, "
        "ctr_at_10_lower, ctr_at_10_upper, add_to_cart_rate_lower, add_to_cart_rate_upper, "
        "purchase_rate_lower, purchase_rate_upper FROM online_metrics_by_arm ORDER BY 1",
    )
    # v1: nDCG [a, 0, 0] with mean a/3: var_samp = ((2a/3)^2 + 2 (a/3)^2) / 2 = a^2/3, so the
    # standard error is sqrt(a^2/3 / 3) = a/3 and the interval a/3 -+ 1.96 a/3.
    # Wilson at 95%: 1 of 3 -> [0.0615, 0.7923]; 0 of 3 -> [0, z^2/3 / (1 + z^2/3)] = 0.5615.
    se = NDCG_QA / 3
    one_of_three = (pytest.approx(0.061491, abs=1e-6), pytest.approx(0.792340, abs=1e-6))
    assert got[0] == (
        "v1",
        pytest.approx(se),
        pytest.approx(NDCG_QA / 3 - Z * se),
        pytest.approx(NDCG_QA / 3 + Z * se),
        *one_of_three,
        *one_of_three,
        pytest.approx(0.0, abs=1e-12),
        pytest.approx((Z**2 / 3) / (1 + Z**2 / 3)),
    )
    assert pytest.approx(0.561497, abs=1e-6) == (Z**2 / 3) / (1 + Z**2 / 3)
    # v2: one list, so no nDCG interval; 1 of 1 -> [1 / (1 + z^2), 1] = [0.2065, 1].
    one_of_one = (pytest.approx(1 / (1 + Z**2)), pytest.approx(1.0))
    assert got[1] == ("v2", None, None, None, *one_of_one, *one_of_one, *one_of_one)
