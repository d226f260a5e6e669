"""Adversarial shoppers: sessions that try to steer what the flywheel learns and decides.

Each strategy is what an attacker who can post events would try first; the poisoning trials
mix them into honest traffic at a share of sessions and check that no worse model is ever
promoted. Bots come from a small pool of network addresses (a handful of machines), unless
``addresses`` is 0: then each bot session has its own (a botnet), the hardest case for caps.

* ``last_result``: click (and buy) the last result of every list: inflates inverse-propensity
  weights of whatever ranks low.
* ``target``: click (and buy) one target product for every query; where it was not served,
  claim it was, at position 1.
* ``unserved``: click products that were never served, at positions the bot makes up.
* ``flood``: identical sessions: one query, the target bought at position 1, again and again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from services.simulator.behaviour import Reaction

Strategy = Literal["last_result", "target", "unserved", "flood"]
STRATEGIES: tuple[Strategy, ...] = ("last_result", "target", "unserved", "flood")


@dataclass(frozen=True, slots=True)
class BotMix:
    """Which share of sessions are bots, what they do and where they come from."""

    share: float
    strategy: Strategy
    target: str
    """The product a ``target`` or ``flood`` bot pushes."""
    addresses: int = 8
    """Distinct network addresses the bots use; 0: a new one per session."""
    flood_query: str | None = None
    """The one query of ``flood`` sessions (default: the first intent drawn)."""

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise ValueError(f"bot share must lie in [0, 1], got {self.share}")


def _engage(position: int, product: str) -> list[Reaction]:
    return [
        Reaction(position, product, "click"),
        Reaction(position, product, "add_to_cart"),
        Reaction(position, product, "purchase"),
    ]


def bot_reactions(
    mix: BotMix,
    results: Sequence[str],
    catalog: Sequence[str],
    rng: random.Random,
) -> list[Reaction]:
    """What a bot reports for a served list: impressions for every result, then its actions."""
    reactions = [Reaction(i + 1, pid, "impression") for i, pid in enumerate(results)]
    if mix.strategy == "last_result" and results:
        return reactions + _engage(len(results), results[-1])
    if mix.strategy in ("target", "flood"):
        position = results.index(mix.target) + 1 if mix.target in results else 1
        return reactions + _engage(position, mix.target)
    if mix.strategy == "unserved":
        served = set(results)
        for _ in range(20):
            product = rng.choice(catalog)
            if product not in served:
                return reactions + _engage(rng.randint(1, 3), product)
    return reactions
