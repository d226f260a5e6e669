"""Team-draft interleaving (Radlinski, Kurup & Joachims 2008).

Two rankers are compared on one served list: in each round the team with fewer picks so far
(a coin flip when both have picked equally often) adds its highest-ranked result that is not
in the list yet. Each position remembers the team that contributed it, so a click credits one
ranker (Chapelle et al. 2012 count the clicks per team and let the team with more clicks win).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Hashable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

TEAM_A = 0
TEAM_B = 1


def rng_for(query_id: str) -> random.Random:
    """A coin seeded from the served list's id, so its interleaving can be replayed."""
    seed = int.from_bytes(hashlib.blake2b(query_id.encode(), digest_size=8).digest())
    return random.Random(seed)


def team_draft(a: Sequence[T], b: Sequence[T], k: int, rng: random.Random) -> list[tuple[T, int]]:
    """Merge rankings ``a`` and ``b`` into at most ``k`` distinct items, each with its team.

    Returns ``(item, team)`` pairs in served order, ``team`` being :data:`TEAM_A` or
    :data:`TEAM_B`. While both rankings have unpicked items the teams' sizes differ by at most
    one and each team's picks keep that team's order. When one ranking is used up, the other
    fills the remaining positions (so the list is only shorter than ``k`` when the two rankings
    together hold fewer than ``k`` distinct items). Duplicates within a ranking are skipped.
    """
    rankings = (a, b)
    cursors = [0, 0]
    sizes = [0, 0]
    chosen: set[T] = set()
    merged: list[tuple[T, int]] = []

    def next_unpicked(team: int) -> T | None:
        ranking = rankings[team]
        while cursors[team] < len(ranking) and ranking[cursors[team]] in chosen:
            cursors[team] += 1
        return ranking[cursors[team]] if cursors[team] < len(ranking) else None

    while len(merged) < k:
        heads = (next_unpicked(TEAM_A), next_unpicked(TEAM_B))
        if heads[TEAM_A] is None and heads[TEAM_B] is None:
            break
        if heads[TEAM_A] is None:
            team = TEAM_B
        elif heads[TEAM_B] is None:
            team = TEAM_A
        elif sizes[TEAM_A] != sizes[TEAM_B]:
            team = TEAM_A if sizes[TEAM_A] < sizes[TEAM_B] else TEAM_B
        else:
            team = TEAM_A if rng.random() < 0.5 else TEAM_B
        item = heads[team]
        assert item is not None
        chosen.add(item)
        sizes[team] += 1
        cursors[team] += 1
        merged.append((item, team))
    return merged
