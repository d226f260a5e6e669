"""Team-draft interleaving: the merge's invariants, by example and as properties."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from services.interleaving import TEAM_A, TEAM_B, rng_for, team_draft


def _team(merged: list[tuple[str, int]], team: int) -> list[str]:
    return [item for item, t in merged if t == team]


def test_identical_rankings_alternate_and_keep_the_order() -> None:
    ranking = ["p1", "p2", "p3", "p4"]
    merged = team_draft(ranking, ranking, 4, random.Random(0))
    assert [item for item, _ in merged] == ranking
    assert sorted(t for _, t in merged) == [TEAM_A, TEAM_A, TEAM_B, TEAM_B]


def test_duplicates_are_skipped_and_a_short_ranking_is_filled_by_the_other() -> None:
    merged = team_draft(["x", "y"], ["y", "x", "z", "w"], 4, random.Random(1))
    assert sorted(item for item, _ in merged) == ["w", "x", "y", "z"]
    assert [item for item, t in merged if t == TEAM_B][-2:] == ["z", "w"]  # A ran out
    assert team_draft([], [], 3, random.Random(0)) == []
    assert [i for i, _ in team_draft(["a", "a", "b"], [], 5, random.Random(0))] == ["a", "b"]


def test_the_same_query_id_interleaves_the_same_way() -> None:
    a = [f"a{i}" for i in range(10)]
    b = [f"b{i}" for i in range(10)]
    first = team_draft(a, b, 10, rng_for("q-123"))
    assert team_draft(a, b, 10, rng_for("q-123")) == first
    outcomes = {tuple(t for _, t in team_draft(a, b, 10, rng_for(f"q{i}"))) for i in range(50)}
    assert len(outcomes) > 1  # the coin does flip


rankings = st.lists(st.sampled_from([f"p{i}" for i in range(30)]), unique=True, max_size=30)


@given(a=rankings, b=rankings, k=st.integers(1, 15), seed=st.integers(0, 2**32))
def test_team_draft_properties(a: list[str], b: list[str], k: int, seed: int) -> None:
    merged = team_draft(a, b, k, random.Random(seed))
    items = [item for item, _ in merged]
    assert len(items) == len(set(items))  # no duplicates
    assert len(items) == min(k, len(set(a) | set(b)))
    for team, ranking in ((TEAM_A, a), (TEAM_B, b)):
        picks = _team(merged, team)
        assert picks == [p for p in ranking if p in set(picks)]  # the team's own order
    if len(a) >= k and len(b) >= k:  # neither runs out: the drafts stay balanced
        assert abs(len(_team(merged, TEAM_A)) - len(_team(merged, TEAM_B))) <= 1


@given(n=st.integers(1, 20), seed=st.integers(0, 2**32))
def test_each_team_picks_its_best_unpicked_result(n: int, seed: int) -> None:
    a = [f"p{i}" for i in range(n)]
    b = list(reversed(a))
    merged = team_draft(a, b, n, random.Random(seed))
    chosen: set[str] = set()
    for item, team in merged:
        ranking = a if team == TEAM_A else b
        assert item == next(p for p in ranking if p not in chosen)
        chosen.add(item)
