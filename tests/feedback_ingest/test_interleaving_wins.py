"""Interleaved lists: stored teams, per-list credit, wins/losses/ties and the exported gauges.

Every expected number is worked out by hand from ``_interleaved_log`` (30-minute windows,
refreshed at minute 60). v2 and v3 are canaries interleaved against production v1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feedback_ingest.service import publish_online_metrics
from feedback_ingest.store import DerivedSettings, EventStore, StoreSettings, refresh_derived
from services.events import QueryEvent
from services.ingest_settings import ClickModelSettings
from services.metrics import registry_for
from services.settings import Settings
from tests.feedback_ingest.builders import act, at, open_store, query

DERIVED = DerivedSettings(
    click_model=ClickModelSettings(max_position=10, min_observations=1000, fallback_eta=1.0),
    attribution_window_s=30 * 60,
)
SETTINGS = StoreSettings(derived=DERIVED)
ABCD = ["a", "b", "c", "d"]


def interleaved(
    query_id: str, teams: list[str], *, version: str = "v2", minute: float = 0
) -> QueryEvent:
    return query(
        query_id,
        "drill",
        ABCD[: len(teams)],
        minute=minute,
        version=version,
        arm="interleaved",
        teams=teams,
        control="v1",
    )


def _interleaved_log(store: EventStore) -> None:
    queries = [
        # i1: v2 gets a and d (d clicked and bought: one credit), v1 none -> win.
        interleaved("i1", ["v2", "v1", "v1", "v2"]),
        # i2: v1's a and d clicked, v2's b clicked and carted -> 1 : 2, a loss.
        interleaved("i2", ["v1", "v2", "v2", "v1"]),
        # i3: one click each -> tie.
        interleaved("i3", ["v2", "v1"]),
        # i4: impressions only; i5: the only click comes after the window and the storefront's
        # extra product z is not in the served list -> both unengaged.
        interleaved("i4", ["v1", "v2"]),
        interleaved("i5", ["v2", "v1"]),
        # i6 (minute 50) is still inside its window at minute 60: not counted yet.
        interleaved("i6", ["v2", "v1"], minute=50),
        # i7: another canary, v3, wins its only list.
        interleaved("i7", ["v1", "v3"], version="v3"),
        # A production list with clicks: not interleaved, not counted.
        query("p1", "drill", ABCD),
    ]
    actions = [
        act("i1", "click", "a", 1),
        act("i1", "click", "d", 4),
        act("i1", "purchase", "d", 4, minute=3),
        act("i2", "click", "a", 1),
        act("i2", "click", "d", 4),
        act("i2", "click", "b", 2),
        act("i2", "add_to_cart", "b", 2),
        act("i3", "click", "a", 1),
        act("i3", "click", "b", 2),
        act("i4", "impression", "a", 1),
        act("i4", "impression", "b", 2),
        act("i5", "click", "a", 1, minute=45),
        act("i5", "click", "z", 3),
        act("i6", "click", "a", 1, minute=51),
        act("i7", "click", "b", 2),
        act("p1", "click", "a", 1),
    ]
    store.write_batch(queries, actions)


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[EventStore]:
    for store in open_store(tmp_path / "events.duckdb", SETTINGS):
        _interleaved_log(store)
        refresh_derived(store, now=at(60))
        yield store


def test_teams_and_control_version_are_stored(logged: EventStore) -> None:
    rows = logged.con.execute(
        "SELECT query_id, arm, teams, control_version FROM queries "
        "WHERE query_id IN ('i1', 'p1') ORDER BY 1"
    ).fetchall()
    assert rows == [
        ("i1", "interleaved", ["v2", "v1", "v1", "v2"], "v1"),
        ("p1", "production", None, None),
    ]


def test_wins_losses_and_ties_per_canary(logged: EventStore) -> None:
    rows = logged.con.execute(
        "SELECT model_version, control_version, lists, engaged_lists, wins, losses, ties "
        "FROM interleaving_wins ORDER BY 1"
    ).fetchall()
    assert rows == [("v2", "v1", 5, 3, 1, 1, 1), ("v3", "v1", 1, 1, 1, 0, 0)]
    refresh_derived(logged, now=at(120))  # i6's window has closed: v2 wins it too
    row = logged.con.execute(
        "SELECT lists, wins FROM interleaving_wins WHERE model_version = 'v2'"
    ).fetchone()
    assert row == (6, 2)


def test_interleaved_lists_are_their_own_arm_in_the_online_metrics(logged: EventStore) -> None:
    rows = logged.con.execute(
        "SELECT model_version, arm, lists FROM online_metrics_by_arm ORDER BY 1, 2"
    ).fetchall()
    assert rows == [("v1", "production", 1), ("v2", "interleaved", 5), ("v3", "interleaved", 1)]


def _sample(name: str, **labels: str) -> float | None:
    return registry_for("ingest").get_sample_value(name, labels)


def test_publish_exports_outcomes_and_intervals(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.ingest.store = SETTINGS
    for store in open_store(tmp_path / "events.duckdb", SETTINGS):
        _interleaved_log(store)
        publish_online_metrics(store, settings)  # now: every window has closed
    outcome = {"model_version": "v2", "control_version": "v1"}
    assert _sample("flywheel_interleaving_lists", **outcome, outcome="win") == 2
    assert _sample("flywheel_interleaving_lists", **outcome, outcome="loss") == 1
    assert _sample("flywheel_interleaving_lists", **outcome, outcome="tie") == 1
    assert _sample("flywheel_interleaving_lists", **outcome, outcome="none") == 2
    arm = {"model_version": "v2", "arm": "interleaved"}
    # v2's six lists: i1, i2, i3, i6 engaged in the top 10 -> CTR 4/6.
    assert _sample("flywheel_online_ctr_at_10", **arm) == pytest.approx(4 / 6)
    lower = _sample("flywheel_online_ctr_at_10_interval", **arm, bound="lower")
    upper = _sample("flywheel_online_ctr_at_10_interval", **arm, bound="upper")
    assert lower is not None and upper is not None and lower < 4 / 6 < upper
    assert _sample("flywheel_online_purchase_ratio", **arm) == pytest.approx(1 / 6)
    assert _sample("flywheel_online_add_to_cart_ratio", **arm) == pytest.approx(2 / 6)
    ndcg = _sample("flywheel_online_ndcg_at_10", **arm)
    ndcg_lower = _sample("flywheel_online_ndcg_at_10_interval", **arm, bound="lower")
    assert ndcg is not None and ndcg_lower is not None and ndcg_lower < ndcg
    production = {"model_version": "v1", "arm": "production"}  # one list: no nDCG interval
    assert _sample("flywheel_online_ndcg_at_10_interval", **production, bound="lower") is None
    assert _sample("flywheel_online_ctr_at_10", **production) == 1.0
