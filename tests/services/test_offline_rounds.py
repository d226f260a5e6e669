"""Offline shopper rounds: served and routed like GET /search, and the in-memory outcomes the
benchmarks use agree with the event store's derived SQL on the same lists."""

from __future__ import annotations

import random
from collections import Counter
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path

import pytest

from feedback_ingest.store import EventStore, refresh_derived
from services.encoding.base import SpladeEncoder
from services.events import InteractionEvent
from services.index.base import ProductIndex
from services.settings import SimulatorSettings
from services.simulator import IntentPool
from services.simulator.bots import BotMix
from services.simulator.outcomes import bound_gains, click_ndcg, interleaving_outcome
from services.simulator.rounds import Deployment, OfflineShoppers, RoundLog, ServedLists
from services.synthetic import generate_catalog, generate_labelled_set


def _unused_index(_version: str) -> AbstractContextManager[ProductIndex]:
    raise AssertionError("every list is added up front")


def _unused_encoder(_version: str) -> SpladeEncoder:
    raise AssertionError("every list is added up front")


@pytest.fixture(scope="module")
def shoppers() -> OfflineShoppers:
    products = generate_catalog(300, seed=3)
    pool = IntentPool(generate_labelled_set(products), holdout_fraction=0.2)
    served = ServedLists(_unused_index, _unused_encoder, mode="hybrid", k=10)
    rng = random.Random(0)
    ids = [p.id for p in products]
    for intent in pool.train:
        text = " ".join(intent.text.split())
        relevant = sorted(intent.grades, key=lambda p: -intent.grades[p])
        # v2 ranks the relevant products first; v1 mostly at random.
        served.add("v2", text, (relevant + rng.sample(ids, 20))[:10])
        served.add("v1", text, (rng.sample(ids, 8) + relevant)[:10])
    return OfflineShoppers(pool, SimulatorSettings(), served, secret=b"test", catalog=ids)


def _stored(tmp_path: Path, log: RoundLog) -> EventStore:
    store = EventStore(tmp_path / "events.duckdb")
    log.write(store)
    last = max(e.timestamp for e in log.lists)
    refresh_derived(store, now=last + timedelta(days=1))
    return store


def test_routing_splits_sessions_and_interleaves_the_canary(shoppers: OfflineShoppers) -> None:
    log = shoppers.run(Deployment("v1", "v2", 0.5), 400, seed="route")
    arms = Counter(e.arm for e in log.lists)
    assert set(arms) == {"production", "interleaved"}
    assert 0.35 < arms["interleaved"] / len(log.lists) < 0.65
    by_session: dict[str | None, set[str]] = {}
    for event in log.lists:
        by_session.setdefault(event.session_id, set()).add(event.arm)
    assert all(len(arms) == 1 for arms in by_session.values())  # one arm per session
    for event in log.lists:
        if event.arm == "interleaved":
            assert event.teams is not None and set(event.teams) <= {"v1", "v2"}
            assert event.control_version == "v1" and event.model_version == "v2"


def test_in_memory_outcomes_match_the_derived_sql(
    shoppers: OfflineShoppers, tmp_path: Path
) -> None:
    log = shoppers.run(Deployment("v1", "v2", 0.5), 300, seed="sql")
    store = _stored(tmp_path, log)
    by_query: dict[str, list[InteractionEvent]] = {}
    for act in log.interactions:
        by_query.setdefault(act.query_id, []).append(act)
    sql_ndcg = dict(store.con.execute("SELECT query_id, ndcg_at_10 FROM online_metrics").fetchall())
    outcomes: Counter[str] = Counter()
    for event in log.lists:
        gains = bound_gains(event, by_query.get(event.query_id, []))
        assert sql_ndcg[event.query_id] == pytest.approx(click_ndcg(event.results, gains))
        if event.arm == "interleaved":
            assert event.teams is not None
            outcomes[interleaving_outcome(event.results, event.teams, gains, "v2")] += 1
    row = store.con.execute("SELECT lists, wins, losses, ties FROM interleaving_wins").fetchone()
    assert row == (sum(outcomes.values()), outcomes["win"], outcomes["loss"], outcomes["tie"])
    assert outcomes["win"] > outcomes["loss"]  # v2 ranks what shoppers want first
    store.close()


def test_bots_forged_clicks_bind_nowhere(shoppers: OfflineShoppers, tmp_path: Path) -> None:
    target = "p-not-in-any-list"
    bots = BotMix(share=0.5, strategy="target", target=target)
    log = shoppers.run(Deployment("v1"), 200, seed="bots", bots=bots)
    assert log.bot_lists
    forged = [a for a in log.interactions if a.object_id == target]
    assert forged and all(a.position == 1 for a in forged)
    store = _stored(tmp_path, log)
    assert store.con.execute(
        "SELECT count(*) FROM judgments WHERE product_id = ?", [target]
    ).fetchone() == (0,)
    store.close()
