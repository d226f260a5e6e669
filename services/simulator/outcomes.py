"""What one served list tells, computed in memory: the benchmarks' fast path.

The same definitions as the event store's derived SQL (``feedback_ingest/store/sql/derived``),
so a benchmark can run thousands of trials without a store; a test checks they agree with the
SQL on the same lists. Gains: purchase 3, add_to_cart 2, click 1, counted only where bound (a
product of the list at the position served). True quality uses the human grades the simulator
knows, with linear gain as in offline evaluation (Järvelin & Kekäläinen, 2002).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from services.events import InteractionEvent, QueryEvent

GAIN = {"click": 1, "add_to_cart": 2, "purchase": 3}
Outcome = Literal["win", "loss", "tie", "none"]


def _dcg(gains: Iterable[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def bound_gains(event: QueryEvent, interactions: Iterable[InteractionEvent]) -> dict[str, int]:
    """Each product's strongest bound engagement on the list (1..3)."""
    served: dict[str, int] = {}
    for i, pid in enumerate(event.results):
        served.setdefault(pid, event.offset + i + 1)  # a repeated product binds at its first
    gains: dict[str, int] = {}
    for act in interactions:
        gain = GAIN.get(act.action_name, 0)
        if gain and served.get(act.object_id) == act.position:
            gains[act.object_id] = max(gains.get(act.object_id, 0), gain)
    return gains


def click_ndcg(results: Sequence[str], gains: Mapping[str, int], k: int = 10) -> float:
    """Online nDCG@k of a list from its engagement gains (0 when nothing was engaged)."""
    listed = [float(gains.get(pid, 0)) for pid in results]
    ideal = _dcg(sorted(listed, reverse=True)[:k])
    return _dcg(listed[:k]) / ideal if ideal > 0 else 0.0


def interleaving_outcome(
    results: Sequence[str], teams: Sequence[str], gains: Mapping[str, int], canary: str
) -> Outcome:
    """Team-draft credit (Chapelle et al., 2012): engaged products per team, canary vs the
    rest; 'none' for a list without engagement."""
    mine = sum(
        1 for pid, team in zip(results, teams, strict=True) if team == canary and gains.get(pid)
    )
    theirs = sum(
        1 for pid, team in zip(results, teams, strict=True) if team != canary and gains.get(pid)
    )
    if mine == theirs:
        return "tie" if mine else "none"
    return "win" if mine > theirs else "loss"


def true_ndcg(results: Sequence[str], grades: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k of a list under the human grades of its query (linear gain; the ideal list
    sorts every judged grade of the query)."""
    ideal = _dcg(sorted(grades.values(), reverse=True)[:k])
    return _dcg([grades.get(pid, 0) for pid in results[:k]]) / ideal if ideal > 0 else 0.0
