"""Feedback no one can forge cheaply: served-list binding and per-session/per-client caps.

A judgment counts only for a product of the list served under that query_id, at the position
the server recorded; no session counts beyond its first lists; no client weighs more than a
capped share of a comparison's lists or of the training weight.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feedback_ingest.store import DerivedSettings, EventStore, StoreSettings, refresh_derived
from services.events import InteractionEvent, QueryEvent
from services.ingest_settings import ClickModelSettings, FeedbackCaps
from tests.feedback_ingest.builders import act, at, open_store, query

CAPS = FeedbackCaps(max_lists_per_session=5, max_client_share=0.1, min_client_lists=3)
SETTINGS = StoreSettings(
    derived=DerivedSettings(
        click_model=ClickModelSettings(max_position=20, min_observations=10_000),
        ips_max_weight=4.0,
        attribution_window_s=60,
        caps=CAPS,
    )
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    yield from open_store(tmp_path / "events.duckdb", SETTINGS)


def _one(store: EventStore, sql: str) -> tuple[object, ...]:
    row = store.con.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


def test_clicks_on_products_never_served_count_for_nothing(store: EventStore) -> None:
    store.write_batch(
        [query("q1", "drill", ["a", "b", "c"])],
        [act("q1", "click", "zz", 1), act("q1", "purchase", "zz", 1)],
    )
    refresh_derived(store, now=at(10))
    assert _one(store, "SELECT count(*) FROM judgments") == (0,)
    assert _one(store, "SELECT count(*) FROM query_product_stats WHERE product_id = 'zz'") == (0,)
    # The list is measured (it was served) but nothing on it was engaged.
    assert _one(store, "SELECT ndcg_at_10, clicked, purchased FROM online_metrics") == (
        0.0,
        False,
        False,
    )


def test_a_click_binds_only_at_the_position_served(store: EventStore) -> None:
    store.write_batch(
        [
            query("q1", "drill", ["a", "b", "c"]),
            # Page 2 of ten per page: results[1] was shown at position 12.
            query("q2", "saw", ["s1", "s2", "s3"], page=2, offset=10),
        ],
        [
            act("q1", "click", "c", 1),  # c was served at 3: a made-up position
            act("q2", "click", "s2", 2),  # in-page index, not the position served
            act("q2", "click", "s3", 13),  # the position served
        ],
    )
    refresh_derived(store, now=at(10))
    got = store.con.execute(
        "SELECT query_id, product_id, grade, position FROM judgments ORDER BY ALL"
    ).fetchall()
    assert got == [("q2", "s1", 0, 11), ("q2", "s2", 0, 12), ("q2", "s3", 1, 13)]


def test_a_session_counts_only_its_first_lists(store: EventStore) -> None:
    # One session from twelve addresses: the session cap applies whatever the client.
    lists = [
        query(
            f"q{i:02d}",
            f"query {i}",
            ["a", "b"],
            minute=i / 10,
            session="greedy",
            client_key=f"c{i}",
        )
        for i in range(12)
    ]
    store.write_batch(lists, [act(q.query_id, "click", "a", 1) for q in lists])
    refresh_derived(store, now=at(10))
    assert _one(store, "SELECT count(*) FILTER (WHERE counted) FROM capped_lists") == (5,)
    assert _one(store, "SELECT count(*) FROM online_metrics") == (5,)
    assert _one(store, "SELECT count(DISTINCT query_id) FROM judgments") == (5,)


def _client_lists(n: int, client: str, *, first: int, arm: str = "production") -> list[QueryEvent]:
    return [
        query(
            f"{client}-{i}",
            f"q {first + i}",
            ["a", "b", "c"],
            minute=(first + i) / 100,
            session=f"{client}-s{i}",
            client_key=client,
        )
        for i in range(n)
    ]


def test_no_client_weighs_more_than_its_share_of_online_lists(store: EventStore) -> None:
    honest = [q for i in range(20) for q in _client_lists(1, f"h{i}", first=i)]
    bot = _client_lists(40, "bot", first=100)
    # Honest shoppers never engage; the bot buys the top result of every list it is served.
    actions = [act(q.query_id, "purchase", "a", 1) for q in bot]
    store.write_batch(honest + bot, actions)
    refresh_derived(store, now=at(10))
    # 60 lists: the bot may count max(3, 0.1 * 60) = 6 of its 40.
    assert _one(store, "SELECT count(*) FROM online_metrics") == (26,)
    assert _one(store, "SELECT lists, purchase_rate FROM online_metrics_by_arm") == (
        26,
        pytest.approx(6 / 26),
    )


def test_no_client_weighs_more_than_its_share_of_interleaving(store: EventStore) -> None:
    def interleaved(qid: str, client: str, minute: float) -> QueryEvent:
        return query(
            qid,
            f"text {qid}",
            ["a", "b"],
            minute=minute,
            version="v2",
            arm="interleaved",
            teams=["v2", "v1"],
            control="v1",
            session=f"s-{qid}",
            client_key=client,
        )

    honest = [interleaved(f"h{i}", f"h{i}", i / 100) for i in range(20)]
    bot = [interleaved(f"b{i}", "bot", 1 + i / 100) for i in range(60)]
    actions = [act(q.query_id, "click", "b", 2) for q in honest[:12]]  # control wins 12
    actions += [act(q.query_id, "click", "a", 1) for q in bot]  # canary "wins" every bot list
    store.write_batch(honest + bot, actions)
    refresh_derived(store, now=at(10))
    # 80 lists: the bot counts max(3, 8) = 8 lists, all wins; the honest lists 12 losses.
    got = _one(store, "SELECT lists, wins, losses FROM interleaving_wins")
    assert got == (28, 8, 12)


def test_training_weight_of_one_client_is_capped(store: EventStore) -> None:
    # One client floods "hammer" -> "target" from 50 sessions at position 3 (1/p = 3 each);
    # 20 honest clients each click "good" once at position 1 for their own query.
    flood = _client_lists(50, "bot", first=0)
    flood_acts = [
        InteractionEvent(
            event_id=f"f{i}",
            query_id=q.query_id,
            action_name="click",
            object_id="c",
            position=3,
            session_id=q.session_id,
            timestamp=at(0),
        )
        for i, q in enumerate(flood)
    ]
    honest = [q for i in range(20) for q in _client_lists(1, f"h{i}", first=100 + i)]
    honest_acts = [act(q.query_id, "click", "a", 1) for q in honest]
    store.write_batch(flood + honest, flood_acts + honest_acts)
    refresh_derived(store, now=at(10))
    # Propensities are the fallback 1/k: a click at position 3 weighs 3, at 1 weighs 1.
    weights = dict(
        store.con.execute(
            "SELECT product_id, sum(ips_weight) FROM query_product_stats GROUP BY 1"
        ).fetchall()
    )
    assert weights["a"] == pytest.approx(20.0)  # 20 honest clicks at position 1: 1 each
    # The bot's 50 pairs (one per query text) weigh 3 each: 150 of everyone's 170; its total
    # is scaled down to max(0.1 * 170, min_client_lists 3 * clip 4) = 17.
    assert weights["c"] == pytest.approx(17.0)


def test_one_client_on_one_pair_weighs_one_clipped_click(store: EventStore) -> None:
    # 30 sessions of one client buy "c" at position 3 for the same query: one pair.
    flood = [
        query(f"f{i}", "hammer", ["a", "b", "c"], minute=i / 100, session=f"f{i}", client_key="bot")
        for i in range(30)
    ]
    acts = [
        InteractionEvent(
            event_id=f"e{i}",
            query_id=q.query_id,
            action_name="click",
            object_id="c",
            position=3,
            session_id=q.session_id,
            timestamp=at(0),
        )
        for i, q in enumerate(flood)
    ]
    store.write_batch(flood, acts)
    refresh_derived(store, now=at(10))
    # Uncapped this pair would weigh 30 * 3 = 90; one client on one pair: clip 4.
    assert _one(store, "SELECT ips_weight FROM query_product_stats WHERE product_id = 'c'") == (
        pytest.approx(4.0),
    )
