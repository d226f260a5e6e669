"""Simulated shoppers: position bias, grade-driven actions, the hash split and real HTTP traffic."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest

from encoder_server.app import create_app
from flywheel_cli.threaded import serve_in_thread
from services.datasets.base import LabelledSet
from services.datasets.protocol import MIN_JUDGED, in_hash_split, sample_queries
from services.events import InteractionEvent, MemorySink, QueryEvent
from services.settings import SimulatorSettings
from services.simulator import IntentPool, ShopperBehaviour, ShopperTraffic
from services.simulator.intents import SPLIT_SALT
from services.synthetic import generate_labelled_set
from tests.conftest import IndexedHome


def _clicks_by_position(behaviour: ShopperBehaviour, grade: int, trials: int) -> Counter[int]:
    rng = random.Random(0)
    ids = [f"p{i}" for i in range(10)]
    grades = dict.fromkeys(ids, grade)
    clicks: Counter[int] = Counter()
    for _ in range(trials):
        for r in behaviour.react(ids, grades, rng):
            if r.action == "click":
                clicks[r.position] += 1
    return clicks


def test_examination_follows_the_position_based_model() -> None:
    cfg = SimulatorSettings(examination_decay=1.0, click_noise=0.0, click_top=1.0, cart_rate=0.0)
    behaviour = ShopperBehaviour(cfg, max_grade=2)
    clicks = _clicks_by_position(behaviour, grade=2, trials=4000)
    # Every examined top-grade product is clicked, so the click rate is P(examine r) = 1 / r.
    for position in (1, 2, 4, 8):
        assert abs(clicks[position] / 4000 - 1 / position) < 0.03, (position, clicks[position])


def test_clicks_carts_and_purchases_grow_with_the_grade() -> None:
    cfg = SimulatorSettings(purchase_rate=0.0)
    behaviour = ShopperBehaviour(cfg, max_grade=3)
    assert behaviour.click_probability(0) == cfg.click_noise
    assert behaviour.click_probability(3) == pytest.approx(cfg.click_top)
    rates = [behaviour.click_probability(g) for g in range(4)]
    assert rates == sorted(rates) and len(set(rates)) == 4
    assert behaviour.cart_probability(0) == 0.0
    assert behaviour.cart_probability(3) == pytest.approx(cfg.cart_rate)
    assert behaviour.click_probability(9) == pytest.approx(
        cfg.click_top
    )  # grades above the top are capped


def test_every_result_is_an_impression_and_a_purchase_ends_the_list() -> None:
    cfg = SimulatorSettings(examination_decay=0.0, click_top=1.0, cart_rate=1.0, purchase_rate=1.0)
    behaviour = ShopperBehaviour(cfg, max_grade=1)
    ids = ["a", "b", "c", "d"]
    reactions = behaviour.react(ids, {"c": 1, "d": 1}, random.Random(1), first_position=11)
    assert [(r.position, r.product_id) for r in reactions if r.action == "impression"] == [
        (11, "a"),
        (12, "b"),
        (13, "c"),
        (14, "d"),
    ]
    bought = [r for r in reactions if r.action == "purchase"]
    assert [(r.position, r.product_id) for r in bought] == [(13, "c")]
    assert not any(r.product_id == "d" and r.action != "impression" for r in reactions)


def _labelled() -> LabelledSet:
    from services.synthetic import generate_catalog

    return generate_labelled_set(generate_catalog(600, seed=5))


def test_held_out_queries_never_reach_shoppers_and_the_split_is_stable() -> None:
    labelled = _labelled()
    pool = IntentPool(labelled, holdout_fraction=0.3)
    again = IntentPool(labelled, holdout_fraction=0.3)
    train = {i.text for i in pool.train}
    heldout = {i.text for i in pool.heldout}
    assert train and heldout and not train & heldout
    assert heldout == {i.text for i in again.heldout}
    rng = random.Random(3)
    assert {pool.draw(rng).text for _ in range(2000)} <= train
    share = len(heldout) / (len(train) + len(heldout))
    assert 0.15 < share < 0.45, share
    assert all(max(i.grades.values()) > 0 for i in pool.train + pool.heldout)


def test_test_set_is_the_reference_protocol_draw_over_the_held_out_side() -> None:
    """The demo and both benchmarks measure on ``test_set``: every query on the held-out side
    is eligible (a relevant product or not), drawn as ``sample_queries`` draws."""
    base = _labelled()
    fraction = 0.3
    qid = next(
        q for q in sorted(base.queries) if in_hash_split(base.queries[q], fraction, salt=SPLIT_SALT)
    )
    # a held-out query whose judged products are all irrelevant: shoppers would never issue
    # it, but the reference protocol measures on it
    unrewarded = {**base.qrels, qid: dict.fromkeys(base.qrels[qid], 0)}
    labelled = LabelledSet(base.name, base.products, base.queries, unrewarded, base.max_grade)
    pool = IntentPool(labelled, holdout_fraction=fraction)
    assert qid in pool.heldout_ids and qid not in {i.query_id for i in pool.heldout}

    test = pool.test_set(2000)
    side = labelled.restrict(pool.heldout_ids)
    assert list(test.queries) == sample_queries(side, at_most=2000, min_judged=MIN_JUDGED)
    assert qid in test.queries
    assert not set(test.texts) & {i.text for i in pool.train}
    assert test.qrels == {q: labelled.qrels[q] for q in test.queries}
    assert list(pool.test_set(3, seed=5).queries) == sample_queries(side, 3, seed=5)


def test_traffic_drives_search_and_events_over_http(indexed_home: IndexedHome) -> None:
    labelled = generate_labelled_set(indexed_home.products)
    cfg = SimulatorSettings(sessions_per_s=200, queries_per_session=2, concurrency=4, seed=9)
    pool = IntentPool(labelled, cfg.holdout_fraction)
    sink = MemorySink()
    with serve_in_thread(create_app(indexed_home.settings, sink=sink)) as url:
        traffic = ShopperTraffic(url, pool, cfg)
        stop = threading.Event()
        thread = traffic.start_thread(stop)
        while traffic.stats.searches < 30 and thread.is_alive():
            thread.join(timeout=0.05)
        stop.set()
        thread.join(timeout=30)
    stats = traffic.stats
    assert stats.searches >= 30 and stats.search_errors == 0
    assert stats.events_sent == stats.events_accepted > 0 and stats.events_rejected == 0
    lists = {e.query_id: e for e in sink.events if isinstance(e, QueryEvent)}
    actions = [e for e in sink.events if isinstance(e, InteractionEvent)]
    assert len(lists) == stats.searches and len(actions) == stats.events_sent
    heldout = {i.text for i in pool.heldout}
    for event in actions:  # every action is on a served list, at the product's served position
        served = lists[event.query_id]
        assert served.results[event.position - 1] == event.object_id
        assert served.session_id == event.session_id
        assert served.user_query not in heldout
    assert stats.actions["impression"] == sum(len(e.results) for e in lists.values())
    assert stats.actions["click"] > 0
    assert stats.latency_percentile(0.99) is not None
